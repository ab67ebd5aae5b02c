/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres demo generate | init`: writes the synthetic demo cohorts and trains the three
 * demo models (alzheimer_classifier, parkinsons_predictor, als_classifier) in-process
 * through model_train. `init` is what `make run` calls: idempotent, and quick when the
 * models already exist. Everything it creates is SYNTHETIC and not for clinical use. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/util.h"
#include "demo/cohorts.h"
#include "model/train.h"

#define DEMO_VERSION "1.0.0"

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres demo <subcommand> [options]\n\n"
                 "subcommands:\n"
                 "  generate   write the synthetic cohorts (CSV + .schema.json sidecars)\n"
                 "  init       generate the cohorts and train + register the three demo models\n\n"
                 "The cohorts are SYNTHETIC and NOT FOR CLINICAL USE (docs/demo-data.md).\n"
                 "'aimedres demo <subcommand> --help' describes the options.\n");
}

static void usage_generate(FILE *out)
{
    fprintf(out, "usage: aimedres demo generate --out DIR\n\n"
                 "Writes DIR/alzheimer.csv, DIR/parkinsons.csv and DIR/als.csv with their .schema.json\n"
                 "sidecars (units, descriptions, clinical valid ranges). The output is deterministic: the\n"
                 "same bytes on every run. Files that already hold those bytes are not rewritten.\n\n"
                 "options:\n"
                 "  --out DIR    output directory (created if needed)\n"
                 "  -h, --help   show this help\n");
}

static void usage_init(FILE *out)
{
    fprintf(out, "usage: aimedres demo init --dir DIR [--env-file FILE]\n\n"
                 "Generates the cohorts into DIR/data/cohorts/, then trains version " DEMO_VERSION
                 " of every demo\n"
                 "model that is not registered yet and makes it stable, with MODEL_STORAGE_PATH=DIR/models,\n"
                 "DATA_DIR=DIR/data and DATABASE_URL=sqlite://DIR/aimedres.db (these override the\n"
                 "configuration). Running it again only reports what is already there.\n\n"
                 "options:\n"
                 "  --dir DIR         state directory (created if needed)\n"
                 "  --env-file FILE   read other settings (LOG_LEVEL, ...) from FILE first\n"
                 "  -h, --help        show this help\n");
}

/* Parses "--flag VALUE" options into vals (indexed like names). 0, 1 (--help shown) or 2. */
static int parse(int argc, char **argv, const char *cmd, const struct option *longopts, const char **vals,
                 void (*help)(FILE *))
{
    optind = 0;
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, "h", longopts, &idx);
        if (c == -1)
            break;
        if (c == 'h') {
            help(stdout);
            return 1;
        }
        if (c == 0 && idx >= 0) {
            vals[idx] = optarg;
            continue;
        }
        int at = optind - 1;
        fprintf(stderr, "aimedres: demo %s: unknown option or missing value: '%s'\n", cmd,
                at > 0 && at < argc ? argv[at] : "?");
        help(stderr);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "aimedres: demo %s: unexpected argument '%s'\n", cmd, argv[optind]);
        help(stderr);
        return 2;
    }
    return 0;
}

static int demo_generate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 0},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *vals[2] = {NULL, NULL};
    int rc = parse(argc, argv, "generate", longopts, vals, usage_generate);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (!vals[0]) {
        fprintf(stderr, "aimedres: demo generate: --out is required\n");
        usage_generate(stderr);
        return 2;
    }
    char err[1024] = "";
    int written = 0;
    if (demo_cohorts_write(vals[0], &written, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++)
        printf("%s/%s (%zu rows, label '%s') + .schema.json\n", vals[0], demo_cohorts[i].file,
               demo_cohorts[i].n_rows, demo_cohorts[i].label);
    printf("%d file(s) written, %d already up to date. SYNTHETIC DATA, NOT FOR CLINICAL USE.\n", written,
           (int)(2 * DEMO_COHORT_COUNT) - written);
    return 0;
}

/* Any version of name registered? 1/0 or -errno. */
static int model_known(store_t *store, const char *name)
{
    json_t *list = NULL;
    int rc = store_model_list(store, &list);
    if (rc < 0)
        return rc;
    size_t i;
    json_t *row;
    int found = 0;
    json_array_foreach(list, i, row)
    {
        const char *n = json_string_value(json_object_get(row, "name"));
        if (n && strcmp(n, name) == 0)
            found = 1;
    }
    json_decref(list);
    return found;
}

static int replace_str(char **slot, const char *value)
{
    char *s = strdup(value);
    if (!s)
        return -ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

static int demo_init(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 0},
        {"env-file", required_argument, NULL, 0},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *vals[3] = {NULL, NULL, NULL};
    int rc = parse(argc, argv, "init", longopts, vals, usage_init);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (!vals[0]) {
        fprintf(stderr, "aimedres: demo init: --dir is required\n");
        usage_init(stderr);
        return 2;
    }
    config_t *cfg = cli_load_config(vals[1]);
    if (!cfg)
        return 1;
    store_t *store = NULL;
    char dir[PATH_MAX], path[PATH_MAX + 64], cohorts[PATH_MAX + 64], err[2048] = "";
    int trained = 0, present = 0;
    rc = util_mkdir_p(vals[0], 0755);
    if (rc < 0 || !realpath(vals[0], dir)) {
        fprintf(stderr, "aimedres: cannot create %s: %s\n", vals[0], strerror(rc < 0 ? -rc : errno));
        rc = 1;
        goto out;
    }
    snprintf(cohorts, sizeof(cohorts), "%s/data/cohorts", dir);
    int written = 0;
    if (demo_cohorts_write(cohorts, &written, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: %s\n", err);
        rc = 1;
        goto out;
    }
    printf("cohorts: %s (%s)\n", cohorts, written ? "generated" : "up to date");

    snprintf(path, sizeof(path), "%s/models", dir);
    int r1 = replace_str(&cfg->model_storage_path, path);
    snprintf(path, sizeof(path), "%s/data", dir);
    int r2 = replace_str(&cfg->data_dir, path);
    snprintf(path, sizeof(path), "sqlite://%s/aimedres.db", dir);
    int r3 = replace_str(&cfg->database_url, path);
    if (r1 < 0 || r2 < 0 || r3 < 0) {
        fprintf(stderr, "aimedres: out of memory\n");
        rc = 1;
        goto out;
    }
    store = cli_open_store(cfg);
    if (!store) {
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < DEMO_COHORT_COUNT; i++) {
        const demo_cohort_t *c = &demo_cohorts[i];
        int known = model_known(store, c->model_name);
        if (known < 0) {
            fprintf(stderr, "aimedres: cannot read the model registry: %s\n", strerror(-known));
            rc = 1;
            goto out;
        }
        if (known) {
            printf("%s: already registered\n", c->model_name);
            present++;
            continue;
        }
        char data[PATH_MAX + 128];
        snprintf(data, sizeof(data), "%s/%s", cohorts, c->file);
        model_train_opts_t o;
        model_train_opts_init(&o);
        o.data_path = data;
        o.label = c->label;
        o.name = c->model_name;
        o.version = DEMO_VERSION;
        o.class_labels = c->class_labels;
        o.description = c->description;
        o.synthetic = true;
        o.set_stable = true;
        o.storage_path = cfg->model_storage_path;
        o.data_dir = cfg->data_dir;
        o.store = store;
        json_t *sum = NULL;
        err[0] = '\0';
        if (model_train(&o, &sum, err, sizeof(err)) < 0) {
            fprintf(stderr, "aimedres: %s: %s\n", c->model_name, err);
            rc = 1;
            goto out;
        }
        const json_t *h = json_object_get(json_object_get(sum, "metrics"), "holdout");
        printf("%s %s: trained on %lld rows, holdout accuracy %.3f, auc %.3f%s\n", c->model_name,
               DEMO_VERSION, (long long)json_integer_value(json_object_get(sum, "n_train")),
               json_number_value(json_object_get(h, "accuracy")),
               json_number_value(json_object_get(h, "auc")),
               json_is_true(json_object_get(sum, "stable")) ? " (stable)" : "");
        log_info("demo model registered", "{s:s, s:s}", "name", c->model_name, "version", DEMO_VERSION);
        json_decref(sum);
        trained++;
    }
    printf("demo ready in %s: %d model(s) trained, %d already present. SYNTHETIC, NOT FOR CLINICAL USE.\n",
           dir, trained, present);
    rc = 0;
out:
    if (store)
        store_close(store);
    config_free(cfg);
    return rc;
}

int cli_demo(int argc, char **argv)
{
    static const cli_sub_t subs[] = {{"generate", demo_generate}, {"init", demo_init}};
    return cli_dispatch("demo", subs, ARRAY_SIZE(subs), usage, argc, argv);
}
