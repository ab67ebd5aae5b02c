/* SPDX-License-Identifier: Apache-2.0 */
/* Deterministic synthetic cohorts for the demo models. Every draw comes from one
 * xoshiro256** stream per cohort (fixed seed), normals from the Marsaglia polar method,
 * and every value is clipped to its clinical valid range and printed with a fixed number
 * of decimals, so a cohort is the same bytes on every run. The class-conditional
 * parameters and where they come from are listed in docs/demo-data.md; change both
 * together. SYNTHETIC DATA, NOT FOR CLINICAL USE. */
#include "demo/cohorts.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "model/csv.h"

#define MAX_COLS 16
#define CSV_MAX_EXISTING ((size_t)16 << 20)

const demo_cohort_t demo_cohorts[DEMO_COHORT_COUNT] = {
    [DEMO_ALZHEIMER] =
        {DEMO_ALZHEIMER, "alzheimer_classifier", "alzheimer.csv", "demented", "nondemented,demented",
         "SYNTHETIC DEMO MODEL - NOT FOR CLINICAL USE. Classifies nondemented vs demented from an "
         "OASIS-style synthetic cohort (age, sex, education, SES, MMSE, eTIV, nWBV, ASF) generated "
         "from published summary statistics; see docs/demo-data.md.",
         1500, 0x0A15A1E2C0FFEEULL},
    [DEMO_PARKINSONS] =
        {DEMO_PARKINSONS, "parkinsons_predictor", "parkinsons.csv", "status", "healthy,parkinsons",
         "SYNTHETIC DEMO MODEL - NOT FOR CLINICAL USE. Classifies healthy vs Parkinson's disease "
         "from synthetic voice measures modelled on the UCI Parkinson's dataset (Little et al.); "
         "see docs/demo-data.md.",
         1500, 0x9A2C1450B1DULL},
    [DEMO_ALS] =
        {DEMO_ALS, "als_classifier", "als.csv", "als", "mimic_or_control,als",
         "SYNTHETIC DEMO MODEL - NOT FOR CLINICAL USE. Classifies ALS vs ALS mimics/controls from a "
         "synthetic cohort (ALSFRS-R total and slope, FVC, disease duration, onset age and site, weight "
         "loss) modelled on PRO-ACT summaries; see docs/demo-data.md.",
         1200, 0xA15F05E1DULL},
};

typedef struct colspec {
    const char *name;
    const char *type; /* number | integer | boolean */
    const char *unit; /* NULL = unitless */
    const char *description;
    double min, max; /* clinical valid range; generated values are clipped to it */
    int decimals;
    bool optional; /* has missing values */
} colspec_t;

static const colspec_t alz_cols[] = {
    {"age", "integer", "years", "Age at the visit", 40, 110, 0, false},
    {"sex", "boolean", NULL, "Sex (0 = female, 1 = male)", 0, 1, 0, false},
    {"educ_years", "integer", "years", "Years of formal education", 0, 30, 0, false},
    {"ses", "integer", NULL, "Socioeconomic status, Hollingshead index (1 = highest, 5 = lowest); optional",
     1, 5, 0, true},
    {"mmse", "integer", "points", "Mini-Mental State Examination score (0-30, 30 = no errors)", 0, 30, 0,
     false},
    {"etiv", "number", "cm3", "Estimated total intracranial volume", 900, 2300, 0, false},
    {"nwbv", "number", "fraction", "Normalized whole-brain volume (brain volume / eTIV)", 0.5, 0.95, 3,
     false},
    {"asf", "number", NULL, "Atlas scaling factor (about 1755 / eTIV)", 0.7, 2.0, 3, false},
};

static const colspec_t pd_cols[] = {
    {"sex", "boolean", NULL, "Sex (0 = female, 1 = male)", 0, 1, 0, false},
    {"mdvp_fo_hz", "number", "Hz", "Average vocal fundamental frequency (MDVP:Fo)", 50, 400, 3, false},
    {"mdvp_fhi_hz", "number", "Hz", "Maximum vocal fundamental frequency (MDVP:Fhi)", 50, 1000, 3, false},
    {"mdvp_flo_hz", "number", "Hz", "Minimum vocal fundamental frequency (MDVP:Flo)", 40, 400, 3, false},
    {"mdvp_jitter_pct", "number", "%", "Cycle-to-cycle variation of F0 (MDVP:Jitter(%))", 0, 0.2, 5, false},
    {"mdvp_shimmer", "number", NULL, "Local variation of amplitude (MDVP:Shimmer)", 0, 0.5, 5, false},
    {"nhr", "number", NULL, "Noise-to-harmonics ratio", 0, 1, 5, false},
    {"hnr", "number", "dB", "Harmonics-to-noise ratio", 0, 45, 3, false},
    {"rpde", "number", NULL, "Recurrence period density entropy; optional", 0, 1, 6, true},
    {"dfa", "number", NULL, "Detrended fluctuation analysis scaling exponent; optional", 0, 1, 6, true},
    {"spread1", "number", NULL, "Nonlinear measure of F0 variation (spread1)", -10, 0, 6, false},
    {"spread2", "number", NULL, "Nonlinear measure of F0 variation (spread2)", 0, 1, 6, false},
    {"d2", "number", NULL, "Correlation dimension; optional", 0, 6, 6, true},
    {"ppe", "number", NULL, "Pitch period entropy", 0, 1, 6, false},
};

static const colspec_t als_cols[] = {
    {"sex", "boolean", NULL, "Sex (0 = female, 1 = male)", 0, 1, 0, false},
    {"onset_age_years", "number", "years", "Age at symptom onset", 18, 95, 1, false},
    {"disease_duration_months", "number", "months", "Time from symptom onset to assessment", 1, 240, 1,
     false},
    {"bulbar_onset", "boolean", NULL, "Site of onset: 1 = bulbar, 0 = spinal/limb", 0, 1, 0, false},
    {"alsfrs_r_total", "integer", "points", "ALSFRS-R total score (0-48, 48 = normal function)", 0, 48, 0,
     false},
    {"alsfrs_r_slope", "number", "points/month",
     "Pre-assessment progression rate (ALSFRS-R total - 48) / disease duration", -48, 0, 3, false},
    {"fvc_pct_predicted", "number", "% predicted", "Forced vital capacity; optional", 10, 150, 1, true},
    {"weight_loss_pct", "number", "%", "Weight loss since symptom onset (negative = gain); optional", -20, 50,
     1, true},
};

static const colspec_t *cohort_cols(const demo_cohort_t *c, size_t *ret_n)
{
    switch (c->id) {
    case DEMO_ALZHEIMER: *ret_n = ARRAY_SIZE(alz_cols); return alz_cols;
    case DEMO_PARKINSONS: *ret_n = ARRAY_SIZE(pd_cols); return pd_cols;
    case DEMO_ALS: *ret_n = ARRAY_SIZE(als_cols); return als_cols;
    default: *ret_n = 0; return NULL;
    }
}

const demo_cohort_t *demo_cohort_find(const char *name)
{
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++) {
        const demo_cohort_t *c = &demo_cohorts[i];
        size_t stem = strlen(c->file) - 4; /* ".csv" */
        if (strcmp(name, c->model_name) == 0 || (strlen(name) == stem && strncmp(name, c->file, stem) == 0))
            return c;
    }
    return NULL;
}

/* ---- PRNG: xoshiro256** (seeded by splitmix64), uniforms from the top 53 bits ---- */

typedef struct rng {
    rng_state_t st; /* common/rng.h */
    bool has_spare;
    double spare;
} rng_t;

static void cohort_rng_seed(rng_t *r, uint64_t seed)
{
    rng_seed(&r->st, seed);
    r->has_spare = false;
    r->spare = 0;
}

/* Uniform in [0, 1), exactly representable. */
static double uniform(rng_t *r)
{
    return rng_uniform(&r->st);
}

static bool bernoulli(rng_t *r, double p)
{
    return uniform(r) < p;
}

/* Standard normal, Marsaglia polar method (pairs; the spare is kept). */
static double normal(rng_t *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * uniform(r) - 1.0;
        v = 2.0 * uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->has_spare = true;
    return u * f;
}

/* mean + sd * (load * z + sqrt(1 - load^2) * e): a normal with the given mean and sd whose
 * correlation with the shared latent factor z is `load`. */
static double latent(rng_t *r, double mean, double sd, double z, double load)
{
    return mean + sd * (load * z + sqrt(1.0 - load * load) * normal(r));
}

static double clip(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- generators: fill v[] in column order, return the label (0/1) ---- */

/* OASIS longitudinal (Marcus et al. 2010), nondemented vs demented sessions. */
static int gen_alzheimer(rng_t *r, double *v)
{
    int c = bernoulli(r, 0.43);
    bool male = bernoulli(r, c ? 0.589 : 0.321);
    double age_m = c ? 76.26 : 77.06, age_sd = c ? 6.94 : 8.10;
    double age = clip(round(age_m + age_sd * normal(r)), 60, 98);
    double edu_m = c ? 13.67 : 15.14, edu_sd = c ? 2.90 : 2.74;
    double ez = normal(r);
    double educ = clip(round(edu_m + edu_sd * ez), 6, 23);
    double ses_m = c ? 2.77 : 2.40, ses_sd = c ? 1.20 : 1.05;
    /* Hollingshead SES falls (numerically) with more education. */
    double ses = clip(round(ses_m + ses_sd * (-0.5 * ez + 0.866 * normal(r))), 1, 5);
    double mmse;
    if (c) /* demented: skewed deficit below the ceiling of 30 */
        mmse = 30 - round(exp(1.30 + 0.85 * normal(r)));
    else /* nondemented: mostly 29-30 */
        mmse = 30 - floor(fabs(1.6 * normal(r)));
    mmse = clip(mmse, 0, 30);
    double etiv;
    if (male)
        etiv = (c ? 1559 : 1670) + 165 * normal(r);
    else
        etiv = (c ? 1380 : 1413) + (c ? 126 : 128) * normal(r);
    etiv = clip(round(etiv), 900, 2300);
    /* nWBV: lower in dementia and with age (about -0.0025 per year). */
    double nwbv = (c ? 0.7163 : 0.7409) - 0.0025 * (age - age_m) + (c ? 0.0267 : 0.0320) * normal(r);
    double asf = 1755.0 / etiv; /* Buckner et al. 2004: eTIV = 1755 / ASF */
    bool ses_missing = bernoulli(r, c ? 0.08 : 0.02);
    v[0] = age;
    v[1] = male;
    v[2] = educ;
    v[3] = ses_missing ? NAN : ses;
    v[4] = mmse;
    v[5] = etiv;
    v[6] = clip(nwbv, 0.5, 0.95);
    v[7] = clip(asf, 0.7, 2.0);
    return c;
}

/* UCI Parkinson's voice measures (Little et al. 2007/2009), class means/SDs computed from
 * the 195 recordings (log scale for the skewed measures). */
typedef struct pd_params {
    double p_male;
    double fo_lm, fo_ls;     /* log Fo mean, sd */
    double hi_m, hi_s;       /* log(Fhi/Fo) */
    double lo_m, lo_s;       /* log(Fo/Flo) */
    double jit_lm, jit_ls;   /* log jitter */
    double shim_lm, shim_ls; /* log shimmer */
    double nhr_lm, nhr_ls;   /* log NHR */
    double hnr_m, hnr_s;
    double rpde_m, rpde_s;
    double dfa_m, dfa_s;
    double s1_m, s1_s;
    double s2_m, s2_s;
    double d2_m, d2_s;
    double ppe_lm, ppe_ls; /* log PPE */
} pd_params_t;

/* clang-format off */
static const pd_params_t pd_healthy = {
    .p_male = 0.45,                         /* assumption, see docs/demo-data.md */
    .fo_lm = 5.1582, .fo_ls = 0.3119,       /* Fo 181.9 (52.7) Hz */
    .hi_m = 0.179, .hi_s = 0.335,           /* Fhi 223.6 (96.7) Hz */
    .lo_m = 0.259, .lo_s = 0.323,           /* Flo 145.2 (58.8) Hz */
    .jit_lm = -5.6558, .jit_ls = 0.4299,    /* jitter 0.00387 (0.00206) */
    .shim_lm = -4.0818, .shim_ls = 0.2912,  /* shimmer 0.0176 (0.0055) */
    .nhr_lm = -5.0821, .nhr_ls = 1.0125,    /* NHR 0.0115 (0.0191) */
    .hnr_m = 24.679, .hnr_s = 3.435,
    .rpde_m = 0.44255, .rpde_s = 0.0922,
    .dfa_m = 0.69572, .dfa_s = 0.05135,
    .s1_m = -6.7593, .s1_s = 0.6428,
    .s2_m = 0.16029, .s2_s = 0.06298,
    .d2_m = 2.1545, .d2_s = 0.3103,
    .ppe_lm = -2.1593, .ppe_ls = 0.3647,    /* PPE 0.123 (0.045) */
};
static const pd_params_t pd_disease = {
    .p_male = 0.65,                         /* assumption, see docs/demo-data.md */
    .fo_lm = 4.9534, .fo_ls = 0.2227,       /* Fo 145.2 (32.3) Hz */
    .hi_m = 0.213, .hi_s = 0.273,           /* Fhi 188.4 (88.3) Hz */
    .lo_m = 0.323, .lo_s = 0.305,           /* Flo 106.9 (32.3) Hz */
    .jit_lm = -5.1417, .jit_ls = 0.5601,    /* jitter 0.00699 (0.00524) */
    .shim_lm = -3.5497, .shim_ls = 0.5621,  /* shimmer 0.0337 (0.0200) */
    .nhr_lm = -4.1180, .nhr_ls = 1.0147,    /* NHR 0.0292 (0.0445) */
    .hnr_m = 20.974, .hnr_s = 4.339,
    .rpde_m = 0.51682, .rpde_s = 0.1013,
    .dfa_m = 0.72541, .dfa_s = 0.05479,
    .s1_m = -5.3334, .s1_s = 0.9708,
    .s2_m = 0.24813, .s2_s = 0.07781,
    .d2_m = 2.4561, .d2_s = 0.3757,
    .ppe_lm = -1.5158, .ppe_ls = 0.3566,    /* PPE 0.234 (0.084) */
};
/* clang-format on */

static int gen_parkinsons(rng_t *r, double *v)
{
    int c = bernoulli(r, 0.75);
    const pd_params_t *p = c ? &pd_disease : &pd_healthy;
    bool male = bernoulli(r, p->p_male);
    /* Two latent factors reproduce the strong correlations of the real measures:
     * z1 drives the perturbation measures (jitter, shimmer, NHR, HNR), z2 the nonlinear
     * ones (spread1, PPE, ...). */
    double z1 = normal(r);
    double z2 = 0.6 * z1 + 0.8 * normal(r);
    /* Fo: women speak about 0.4 log units higher; the shift is centred within each class
     * so the class mean and SD of log Fo stay as published. */
    double shift = 0.4 * ((male ? 0.0 : 1.0) - (1.0 - p->p_male));
    double resid = sqrt(fmax(p->fo_ls * p->fo_ls - p->p_male * (1 - p->p_male) * 0.16, 0.0004));
    double fo = exp(p->fo_lm + shift + resid * normal(r));
    double fhi = fo * exp(fabs(p->hi_m + p->hi_s * normal(r)));
    double flo = fo * exp(-fabs(p->lo_m + p->lo_s * normal(r)));
    double jit = exp(latent(r, p->jit_lm, p->jit_ls, z1, 0.85));
    double shim = exp(latent(r, p->shim_lm, p->shim_ls, z1, 0.85));
    double nhr = exp(latent(r, p->nhr_lm, p->nhr_ls, z1, 0.92));
    double hnr = latent(r, p->hnr_m, p->hnr_s, -z1, 0.92);
    double rpde = latent(r, p->rpde_m, p->rpde_s, z2, 0.5);
    double dfa = p->dfa_m + p->dfa_s * normal(r);
    double s1 = latent(r, p->s1_m, p->s1_s, z2, 0.95);
    double s2 = fmax(latent(r, p->s2_m, p->s2_s, z2, 0.5), 0.005);
    double d2 = latent(r, p->d2_m, p->d2_s, z1, 0.5);
    double ppe = exp(latent(r, p->ppe_lm, p->ppe_ls, z2, 0.95));
    bool rpde_missing = bernoulli(r, 0.02), dfa_missing = bernoulli(r, 0.02), d2_missing = bernoulli(r, 0.03);
    v[0] = male;
    v[1] = clip(fo, 50, 400);
    v[2] = clip(fhi, 50, 1000);
    v[3] = clip(flo, 40, 400);
    v[4] = clip(jit, 0, 0.2);
    v[5] = clip(shim, 0, 0.5);
    v[6] = clip(nhr, 0, 1);
    v[7] = clip(hnr, 0, 45);
    v[8] = rpde_missing ? NAN : clip(rpde, 0, 1);
    v[9] = dfa_missing ? NAN : clip(dfa, 0, 1);
    v[10] = clip(s1, -10, 0);
    v[11] = clip(s2, 0, 1);
    v[12] = d2_missing ? NAN : clip(d2, 0, 6);
    v[13] = clip(ppe, 0, 1);
    return c;
}

/* ALS: PRO-ACT baseline summaries (Atassi et al. 2014 and the PRO-ACT cohort of a 2018
 * JNNP report); the mimic/control class uses illustrative assumptions (docs/demo-data.md). */
static int gen_als(rng_t *r, double *v)
{
    int c = bernoulli(r, 0.60);
    bool male = bernoulli(r, c ? 0.62 : 0.55);
    double onset = clip(c ? 55 + 11 * normal(r) : 52 + 14 * normal(r), 18, 95);
    double dur = c ? exp(log(15.0) - 0.08 + 0.40 * normal(r)) : 30 + 18 * normal(r);
    dur = round(clip(dur, 2, 240) * 10) / 10;
    bool bulbar = bernoulli(r, c ? 0.23 : 0.08);
    double total = c ? 39 + 5 * normal(r) - (bulbar ? 1.5 : 0) : 43.5 + 3.5 * normal(r);
    total = clip(round(total), 0, 48);
    double slope = (total - 48) / dur; /* dFRS, Kimura et al. 2006 */
    double fvc = c ? 92 + 17 * normal(r) - (bulbar ? 4 : 0) : 98 + 13 * normal(r);
    double wl = c ? 5 + 5 * normal(r) : 1.5 + 3 * normal(r);
    bool fvc_missing = bernoulli(r, 0.04), wl_missing = bernoulli(r, 0.06);
    v[0] = male;
    v[1] = onset;
    v[2] = dur;
    v[3] = bulbar;
    v[4] = total;
    v[5] = clip(slope, -48, 0);
    v[6] = fvc_missing ? NAN : clip(fvc, 10, 150);
    v[7] = wl_missing ? NAN : clip(wl, -20, 50);
    return c;
}

int demo_cohort_csv(const demo_cohort_t *c, char **ret_buf, size_t *ret_len)
{
    size_t ncols = 0;
    const colspec_t *cols = cohort_cols(c, &ncols);
    if (!cols || ncols > MAX_COLS)
        return -EINVAL;
    rng_t r;
    cohort_rng_seed(&r, c->seed);
    csv_writer_t w;
    csv_writer_init(&w);
    for (size_t i = 0; i < ncols; i++)
        csv_writer_field(&w, cols[i].name);
    csv_writer_field(&w, c->label);
    csv_writer_end_row(&w);
    for (size_t row = 0; row < c->n_rows; row++) {
        double v[MAX_COLS];
        int label = c->id == DEMO_ALZHEIMER    ? gen_alzheimer(&r, v)
                    : c->id == DEMO_PARKINSONS ? gen_parkinsons(&r, v)
                                               : gen_als(&r, v);
        for (size_t i = 0; i < ncols; i++)
            csv_writer_fixed(&w, v[i], cols[i].decimals);
        csv_writer_fixed(&w, label, 0);
        csv_writer_end_row(&w);
    }
    char *buf = csv_writer_steal(&w, ret_len);
    if (!buf)
        return -ENOMEM;
    *ret_buf = buf;
    return 0;
}

static json_t *range_value(double x)
{
    return x == floor(x) ? json_integer((json_int_t)x) : json_real(x);
}

int demo_cohort_schema_json(const demo_cohort_t *c, char **ret_buf, size_t *ret_len)
{
    size_t ncols = 0;
    const colspec_t *cols = cohort_cols(c, &ncols);
    if (!cols)
        return -EINVAL;
    json_t *features = json_object();
    json_t *root =
        json_pack("{s:s, s:b, s:s, s:s, s:o}", "description",
                  "Sidecar schema for aimedres model train: units, descriptions and clinical valid "
                  "ranges of the synthetic demo cohort. SYNTHETIC DATA, NOT FOR CLINICAL USE.",
                  "synthetic", 1, "label", c->label, "class_labels", c->class_labels, "features", features);
    if (!root)
        return -ENOMEM;
    for (size_t i = 0; i < ncols; i++) {
        json_t *f = json_pack("{s:s, s:o, s:s, s:o, s:o, s:b}", "type", cols[i].type, "unit",
                              cols[i].unit ? json_string(cols[i].unit) : json_null(), "description",
                              cols[i].description, "min", range_value(cols[i].min), "max",
                              range_value(cols[i].max), "required", !cols[i].optional);
        if (!f || json_object_set_new(features, cols[i].name, f) < 0) {
            json_decref(root);
            return -ENOMEM;
        }
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(root);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return -ENOMEM;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *ret_buf = t;
    *ret_len = n + 1;
    return 0;
}

/* Writes buf to path unless the file already holds exactly these bytes. */
static int write_if_changed(const char *path, const char *buf, size_t len, int *written)
{
    char *old = NULL;
    size_t old_len = 0;
    if (util_read_file(path, CSV_MAX_EXISTING, &old, &old_len) == 0) {
        bool same = old_len == len && memcmp(old, buf, len) == 0;
        free(old);
        if (same)
            return 0;
    }
    int rc = util_write_file_atomic(path, buf, len, 0644);
    if (rc == 0 && written)
        (*written)++;
    return rc;
}

/* Renders one file of cohort c and writes it to path unless unchanged. A render failure
 * is explained as "<what> <c->file>: <reason>". */
static int render_and_write(const demo_cohort_t *c, int (*render)(const demo_cohort_t *, char **, size_t *),
                            const char *what, const char *path, int *written, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = render(c, &buf, &len);
    if (rc < 0) {
        snprintf(err, errlen, "%s %s: %s", what, c->file, strerror(-rc));
        return rc;
    }
    rc = write_if_changed(path, buf, len, written);
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
    return rc;
}

int demo_cohorts_write(const char *dir, int *ret_written, char *err, size_t errlen)
{
    int written = 0;
    int rc = util_mkdir_p(dir, 0755);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++) {
        const demo_cohort_t *c = &demo_cohorts[i];
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", dir, c->file) >= (int)sizeof(path) - 16) {
            snprintf(err, errlen, "%s: path too long", dir);
            return -ENAMETOOLONG;
        }
        if ((rc = render_and_write(c, demo_cohort_csv, "cannot generate", path, &written, err, errlen)) < 0)
            return rc;
        strcat(path, ".schema.json");
        if ((rc = render_and_write(c, demo_cohort_schema_json, "cannot build the schema of", path, &written,
                                   err, errlen)) < 0)
            return rc;
    }
    if (ret_written)
        *ret_written = written;
    return 0;
}
