/* SPDX-License-Identifier: Apache-2.0 */
/* `aimedres model train | import | register | list | show`: flag parsing and output for
 * model versions. The work happens in model/train.c and model/registry.c; this file only
 * turns flags into options and results into tables or JSON. */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h" /* audit (issue 5) */
#include "cli/cli.h"
#include "common/log.h"
#include "common/util.h"
#include "model/manifest.h"
#include "model/registry.h"
#include "model/train.h"

#define MAX_LIST_ARGS 4096

static void usage(FILE *out)
{
    fprintf(out, "usage: aimedres model <subcommand> [options]\n\n"
                 "subcommands:\n"
                 "  train      train an XGBoost model from a CSV and register it\n"
                 "  import     register a booster trained elsewhere, with schema and metrics from a CSV\n"
                 "  register   register a version directory (manifest.json + booster)\n"
                 "  list       list registered model versions\n"
                 "  show       show one model: manifest summary and versions\n\n"
                 "'aimedres model <subcommand> --help' describes the options.\n"
                 "The artifact format is described in docs/model-format.md.\n");
}

static const char common_data_help[] =
    "  --drop COL             ignore column COL (repeatable); every other column except the label\n"
    "                         must be numeric and becomes a feature, in file order\n"
    "  --units F=U,...        units of features (overrides the sidecar)\n"
    "  --schema FILE          sidecar schema (default: <data>.schema.json when it exists):\n"
    "                         "
    "{\"features\":{name:{\"unit\",\"description\",\"min\",\"max\",\"required\",\"type\"}}}\n"
    "  --class-labels A,B,... names of classes 0, 1, ... (default \"0\",\"1\",...)\n"
    "  --threshold P          binary decision threshold on P(class 1), default 0.5\n"
    "  --description TEXT     manifest description\n"
    "  --synthetic            mark the model as trained on synthetic data (not for clinical use)\n"
    "  --set-stable           make this version the serving one even if another version is stable\n"
    "  --json                 print the summary as JSON\n"
    "  --env-file FILE        read settings (MODEL_STORAGE_PATH, DATA_DIR, DATABASE_URL) from FILE\n"
    "  -h, --help             show this help\n\n"
    "Data rules: at least 10 rows; missing cells are empty, NA or nan (any other text in a numeric\n"
    "column is refused, naming its line); a column with one value everywhere trains with a warning.\n"
    "Classifier labels are the class indices 0..K-1 (0/1 for binary); train also needs every class\n"
    "present with 2+ rows. Recode other codings (1/2, yes/no) and name the classes with\n"
    "--class-labels.\n\n"
    "Exit status: 0 registered; 1 the data cannot make this model, or the registry, storage or\n"
    "XGBoost failed; 2 usage error (a missing, malformed or unknown option or --param, or one\n"
    "naming a column or feature the data does not have). Nothing is registered on failure.\n";

_Static_assert(MODEL_TRAIN_MIN_ROWS == 10, "common_data_help states the minimum row count");

static void usage_train(FILE *out)
{
    fprintf(out,
            "usage: aimedres model train --data CSV --label COL --name NAME --version VERSION [options]\n\n"
            "Trains an XGBoost booster through the C API on a stratified split (per class; random for\n"
            "regression), scores the holdout, infers the schema (types, valid ranges widened by 10%% of\n"
            "the observed span, required when never missing) and drift baselines, registers the version\n"
            "in MODEL_STORAGE_PATH/<name>/<version>/ and writes the holdout rows to\n"
            "DATA_DIR/baseline/<name>_validation.csv (the model's latest) and, as a hard link,\n"
            "DATA_DIR/baseline/<name>_<version>_validation.csv (the version's own, which the rollout\n"
            "gates read when they judge this version).\n\n"
            "options:\n"
            "  --data CSV             training data with a header row (required)\n"
            "  --label COL            label column (required): 0/1 -> binary, integers 0..19 -> multiclass,\n"
            "                         otherwise regression\n"
            "  --name NAME            model name (required)\n"
            "  --version VERSION      version, e.g. 1.0.0 (required)\n"
            "  --task T               binary | multiclass | regression (overrides inference)\n"
            "  --param K=V            XGBoost parameter (repeatable); defaults: objective by task,\n"
            "                         max_depth=4 eta=0.1 nthread=2 seed=<seed>; a parameter XGBoost\n"
            "                         does not use (mistyped, or not for this objective) is refused\n"
            "  --rounds N             boosting rounds, default 100\n"
            "  --seed N               split and XGBoost seed, default 42\n"
            "  --validation-fraction F  holdout share, default 0.2 (per class: every class needs 2+ rows)\n"
            "%s",
            common_data_help);
}

static void usage_import(FILE *out)
{
    fprintf(
        out,
        "usage: aimedres model import --booster FILE --data CSV --label COL --name NAME --version VERSION "
        "[options]\n\n"
        "Registers a booster trained elsewhere (XGBoost .json or .ubj, copied as is). The CSV's feature\n"
        "columns must match the booster's features in number and, when the booster stores names, in\n"
        "name and order. The task comes from the booster's objective; all rows of the CSV are the\n"
        "holdout for metrics and the source of the schema and baselines.\n\n"
        "options:\n"
        "  --booster FILE         booster saved by XGBoost (required)\n"
        "  --data CSV             labelled data with a header row (required)\n"
        "  --label COL            label column (required)\n"
        "  --name NAME            model name (required)\n"
        "  --version VERSION      version (required)\n"
        "  --all-rounds           a booster saved after early stopping is refused unless its rounds end\n"
        "                         at best_iteration (save booster[:best_iteration+1]); this serves all\n"
        "                         of its rounds instead, as Booster.predict does\n"
        "%s",
        common_data_help);
}

static void usage_register(FILE *out)
{
    fprintf(out,
            "usage: aimedres model register PATH [--set-stable] [--json] [--env-file FILE]\n\n"
            "Registers the version directory PATH (manifest.json + booster): checks the booster's sha256\n"
            "against the manifest, that it loads and predicts on its own schema, copies it into\n"
            "MODEL_STORAGE_PATH/<name>/<version>/ and records it. A refused artifact changes nothing.\n\n"
            "options:\n"
            "  --set-stable      make it the serving version (the first version of a model always is)\n"
            "  --json            print the result as JSON\n"
            "  --env-file FILE   read settings from FILE first\n"
            "  -h, --help        show this help\n");
}

static void usage_list(FILE *out)
{
    fprintf(out, "usage: aimedres model list [--json] [--env-file FILE]\n\n"
                 "Lists every registered version: name, version, stable, task, registration time.\n\n"
                 "options:\n"
                 "  --json            print the registry rows as JSON\n"
                 "  --env-file FILE   read settings from FILE first\n"
                 "  -h, --help        show this help\n");
}

static void usage_show(FILE *out)
{
    fprintf(out, "usage: aimedres model show NAME [--json] [--env-file FILE]\n\n"
                 "Shows the manifest of the stable version of NAME (or the latest one when none is stable):\n"
                 "task, classes, features with units and valid ranges, metrics, and all versions.\n\n"
                 "options:\n"
                 "  --json            print {\"name\",\"stable_version\",\"versions\",\"manifest\"} as JSON\n"
                 "  --env-file FILE   read settings from FILE first\n"
                 "  -h, --help        show this help\n");
}

/* ---- shared option parsing ---- */

enum {
    OPT_DATA = 256,
    OPT_LABEL,
    OPT_NAME,
    OPT_VERSION,
    OPT_TASK,
    OPT_PARAM,
    OPT_ROUNDS,
    OPT_SEED,
    OPT_VALFRAC,
    OPT_DROP,
    OPT_UNITS,
    OPT_SCHEMA,
    OPT_CLASS_LABELS,
    OPT_THRESHOLD,
    OPT_DESCRIPTION,
    OPT_SYNTHETIC,
    OPT_SET_STABLE,
    OPT_JSON,
    OPT_ENV_FILE,
    OPT_BOOSTER,
    OPT_ALL_ROUNDS,
};

typedef struct cli_opts {
    model_train_opts_t t;
    const char *params[MAX_LIST_ARGS];
    const char *drops[MAX_LIST_ARGS];
    const char *env_file;
    bool json;
    int n_positional;
    const char *positional[4];
} cli_opts_t;

/* Parses argv (argv[0] is the subcommand). allowed: the OPT_* values this subcommand
 * takes, 0-terminated. Returns 0, 1 for --help (printed), or 2 for a usage error (printed). */
static int parse(int argc, char **argv, const char *cmd, const int *allowed, int max_positional,
                 void (*help)(FILE *), cli_opts_t *co)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"label", required_argument, NULL, OPT_LABEL},
        {"name", required_argument, NULL, OPT_NAME},
        {"version", required_argument, NULL, OPT_VERSION},
        {"task", required_argument, NULL, OPT_TASK},
        {"param", required_argument, NULL, OPT_PARAM},
        {"rounds", required_argument, NULL, OPT_ROUNDS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"validation-fraction", required_argument, NULL, OPT_VALFRAC},
        {"drop", required_argument, NULL, OPT_DROP},
        {"units", required_argument, NULL, OPT_UNITS},
        {"schema", required_argument, NULL, OPT_SCHEMA},
        {"class-labels", required_argument, NULL, OPT_CLASS_LABELS},
        {"threshold", required_argument, NULL, OPT_THRESHOLD},
        {"description", required_argument, NULL, OPT_DESCRIPTION},
        {"synthetic", no_argument, NULL, OPT_SYNTHETIC},
        {"set-stable", no_argument, NULL, OPT_SET_STABLE},
        {"json", no_argument, NULL, OPT_JSON},
        {"env-file", required_argument, NULL, OPT_ENV_FILE},
        {"booster", required_argument, NULL, OPT_BOOSTER},
        {"all-rounds", no_argument, NULL, OPT_ALL_ROUNDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    model_train_opts_init(&co->t);
    co->t.params = co->params;
    co->t.drop = co->drops;
    optind = 0; /* GNU: full re-initialisation */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "h", longopts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            help(stdout);
            return 1;
        }
        bool ok = false;
        for (const int *a = allowed; *a; a++)
            ok |= *a == c;
        if (c == '?' || c == ':' || !ok) {
            /* The offending element: the option itself, not its separate value. */
            int at = optind - 1;
            if (c != '?' && optarg && at > 0 && optarg == argv[at])
                at--;
            const char *bad = at > 0 && at < argc ? argv[at] : "?";
            if (c == '?')
                fprintf(stderr, "aimedres: model %s: unknown option or missing value: '%s'\n", cmd, bad);
            else
                fprintf(stderr, "aimedres: model %s: option '%s' does not apply here\n", cmd, bad);
            help(stderr);
            return 2;
        }
        int64_t iv;
        double dv;
        switch (c) {
        case OPT_DATA: co->t.data_path = optarg; break;
        case OPT_LABEL: co->t.label = optarg; break;
        case OPT_NAME: co->t.name = optarg; break;
        case OPT_VERSION: co->t.version = optarg; break;
        case OPT_TASK: co->t.task = optarg; break;
        case OPT_PARAM:
            if (co->t.n_params >= MAX_LIST_ARGS)
                goto toomany;
            co->params[co->t.n_params++] = optarg;
            break;
        case OPT_DROP:
            if (co->t.n_drop >= MAX_LIST_ARGS)
                goto toomany;
            co->drops[co->t.n_drop++] = optarg;
            break;
        case OPT_ROUNDS:
            if (util_parse_int64(optarg, 1, MODEL_TRAIN_MAX_ROUNDS, &iv) < 0) {
                fprintf(stderr, "aimedres: model %s: --rounds: expected an integer 1..%d\n", cmd,
                        MODEL_TRAIN_MAX_ROUNDS);
                return 2;
            }
            co->t.rounds = (int)iv;
            break;
        case OPT_SEED:
            if (util_parse_int64(optarg, 0, INT64_MAX, &iv) < 0) {
                fprintf(stderr, "aimedres: model %s: --seed: expected a non-negative integer\n", cmd);
                return 2;
            }
            co->t.seed = (uint64_t)iv;
            break;
        case OPT_VALFRAC:
            if (util_parse_double(optarg, &dv) < 0 || !(dv > 0 && dv <= 0.9)) {
                fprintf(stderr, "aimedres: model %s: --validation-fraction: expected a number in (0, 0.9]\n",
                        cmd);
                return 2;
            }
            co->t.validation_fraction = dv;
            break;
        case OPT_THRESHOLD:
            if (util_parse_double(optarg, &dv) < 0 || !(dv > 0 && dv < 1)) {
                fprintf(stderr,
                        "aimedres: model %s: --threshold: expected a number strictly between 0 and 1\n", cmd);
                return 2;
            }
            co->t.threshold = dv;
            break;
        case OPT_UNITS: co->t.units = optarg; break;
        case OPT_SCHEMA: co->t.schema_path = optarg; break;
        case OPT_CLASS_LABELS: co->t.class_labels = optarg; break;
        case OPT_DESCRIPTION: co->t.description = optarg; break;
        case OPT_SYNTHETIC: co->t.synthetic = true; break;
        case OPT_SET_STABLE: co->t.set_stable = true; break;
        case OPT_JSON: co->json = true; break;
        case OPT_ENV_FILE: co->env_file = optarg; break;
        case OPT_BOOSTER: co->t.booster_path = optarg; break;
        case OPT_ALL_ROUNDS: co->t.all_rounds = true; break;
        default: break;
        }
        continue;
    toomany:
        fprintf(stderr, "aimedres: model %s: more than %d --param/--drop options\n", cmd, MAX_LIST_ARGS);
        return 2;
    }
    /* GNU getopt moved the positionals to the end. */
    while (optind < argc) {
        if (co->n_positional >= max_positional) {
            fprintf(stderr, "aimedres: model %s: unexpected argument '%s'\n", cmd, argv[optind]);
            help(stderr);
            return 2;
        }
        co->positional[co->n_positional++] = argv[optind++];
    }
    return 0;
}

/* Allocates the options and parses argv for subcommand cmd; arg names the one positional
 * argument it requires ("PATH", "NAME"), NULL for none. Returns the options (caller frees),
 * or NULL with *ret_status the exit status: 0 after --help, 1 out of memory, 2 for a usage
 * error (printed). */
static cli_opts_t *parse_cmd(int argc, char **argv, const char *cmd, const int *allowed, const char *arg,
                             void (*help)(FILE *), int *ret_status)
{
    cli_opts_t *co = calloc(1, sizeof(*co));
    if (!co) {
        *ret_status = 1;
        return NULL;
    }
    int rc = parse(argc, argv, cmd, allowed, arg ? 1 : 0, help, co);
    if (rc == 0 && arg && co->n_positional != 1) {
        fprintf(stderr, "aimedres: model %s: %s is required\n", cmd, arg);
        help(stderr);
        rc = 2;
    }
    if (rc != 0) {
        free(co);
        *ret_status = rc == 1 ? 0 : 2;
        return NULL;
    }
    return co;
}

/* audit (issue 5): opens the audit trail before any work, so that a broken audit setup refuses
 * the command rather than registering a model unaudited; 0 or 1 (reason printed). */
static int open_audit(const config_t *cfg, audit_log_t **ret)
{
    char err[1024] = "";
    if (audit_log_open(cfg, ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: audit: %s\n", err);
        return 1;
    }
    return 0;
}

/* Loads the configuration, opens the store and, when ret_audit is not NULL, the audit trail;
 * prints the reason and returns 1 on failure. close_env undoes it. */
/* The configuration, the store and (ret_audit) the audit log. Without ret_audit the command
 * only reads, and a database that does not exist is an error rather than created empty (a
 * mistyped DATABASE_URL must not answer "no models registered"). */
static int open_env(const char *env_file, config_t **ret_cfg, store_t **ret_store, audit_log_t **ret_audit)
{
    config_t *cfg = cli_load_config(env_file);
    if (!cfg)
        return 1;
    char db[4096], err[512];
    if (!ret_audit && store_url_file_path(cfg->database_url, db, sizeof(db), err, sizeof(err)) == 0 &&
        access(db, F_OK) != 0) {
        fprintf(stderr,
                "aimedres: database: %s (DATABASE_URL) does not exist: a typo, or nothing was registered "
                "here yet (serve and model register create it)\n",
                db);
        config_free(cfg);
        return 1;
    }
    store_t *s = cli_open_store(cfg);
    if (!s) {
        config_free(cfg);
        return 1;
    }
    if (ret_audit && open_audit(cfg, ret_audit) != 0) {
        store_close(s);
        config_free(cfg);
        return 1;
    }
    *ret_cfg = cfg;
    *ret_store = s;
    return 0;
}

static void close_env(config_t *cfg, store_t *store, audit_log_t *audit)
{
    audit_log_close(audit); /* audit (issue 5) */
    store_close(store);
    config_free(cfg);
}

static void print_metric_line(const char *title, const json_t *metrics)
{
    static const char *const keys[] = {"accuracy", "precision", "recall", "f1", "auc",
                                       "log_loss", "rmse",      "mae",    "r2"};
    if (!json_is_object(metrics) || json_object_size(metrics) == 0)
        return;
    printf("%s", title);
    json_t *n = json_object_get(metrics, "n_rows");
    if (json_is_integer(n))
        printf(" (%lld rows)", (long long)json_integer_value(n));
    printf(":");
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        json_t *v = json_object_get(metrics, keys[i]);
        if (json_is_number(v))
            printf(" %s %.4f", keys[i], json_number_value(v));
        else if (v && json_is_null(v))
            printf(" %s n/a", keys[i]);
    }
    printf("\n");
}

static int print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (!s)
        return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

static void print_summary(const char *verb, const json_t *sum)
{
    const json_t *metrics = json_object_get(sum, "metrics");
    printf("%s %s %s (%s, %lld training rows, %lld holdout rows)\n", verb,
           json_string_value(json_object_get(sum, "name")),
           json_string_value(json_object_get(sum, "version")),
           json_string_value(json_object_get(sum, "task")),
           (long long)json_integer_value(json_object_get(sum, "n_train")),
           (long long)json_integer_value(json_object_get(sum, "n_validation")));
    print_metric_line("  training", json_object_get(metrics, "training"));
    print_metric_line("  holdout", json_object_get(metrics, "holdout"));
    printf("  registered at %s%s\n", json_string_value(json_object_get(sum, "path")),
           json_is_true(json_object_get(sum, "stable")) ? " (stable)" : "");
    printf("  validation CSV %s\n", json_string_value(json_object_get(sum, "validation_csv")));
    const char *own = json_string_value(json_object_get(sum, "version_validation_csv"));
    if (own)
        printf("  this version's validation CSV (read by the rollout gates) %s\n", own);
}

/* audit (issue 5): one MODEL_REGISTERED record, written durably. 0 or -errno. serving
 * (NULL on a failure record): {"stable": whether the registration makes the version the
 * serving one, "previous_stable": the version that served until then, when one did}. */
static int audit_registered(audit_log_t *a, const char *cmd, const char *name, const char *version, bool ok,
                            json_t *serving)
{
    char user[256]; /* the OS account (uid), not $USER which the caller sets at will (review22) */
    audit_os_user(user, sizeof(user));
    json_t *detail = json_pack("{s:s,s:s?}", "command", cmd, "version", version);
    if (detail && serving)
        json_object_update(detail, serving);
    audit_event_t ev = {.type = "MODEL_REGISTERED",
                        .user = user,
                        .role = "cli",
                        .action = "C",
                        .entity_type = "model",
                        .entity_id = name,
                        .outcome = ok ? "success" : "failure",
                        .detail = detail};
    int rc = audit_log_append_sync(a, &ev);
    json_decref(detail);
    return rc < 0 ? rc : 0;
}

/* The registration's audit record is written before the store records it (the hook of
 * model_register_hooked): a registration takes effect only when the trail holds it. One that
 * fails after that gets a second record, with outcome failure (review47 #3). */
typedef struct {
    audit_log_t *audit;
    const char *cmd;
    bool refused;  /* the record could not be written: the trail is failing */
    bool recorded; /* the store holds the version: a later failure does not undo it */
} reg_audit_t;

static int audit_before_commit(void *arg, const char *name, const char *version, bool make_stable,
                               const char *previous_stable, char *err, size_t errlen)
{
    reg_audit_t *ra = arg;
    json_t *serving = json_pack("{s:b,s:s?}", "stable", make_stable, "previous_stable", previous_stable);
    int rc = serving ? audit_registered(ra->audit, ra->cmd, name, version, true, serving) : -ENOMEM;
    json_decref(serving);
    if (rc < 0) {
        ra->refused = true;
        snprintf(err, errlen, "the audit record of the registration can not be written (%s): nothing registered",
                 strerror(-rc));
        return rc;
    }
    return 0;
}

static void audit_recorded(void *arg)
{
    ((reg_audit_t *)arg)->recorded = true;
}

/* After model_register_hooked failed: the failure record, unless the trail refused the first,
 * or the version was registered after all (a later step failed: moving the validation CSV),
 * which the success record already says (review48 #4). */
static void audit_register_failed(const reg_audit_t *ra, const char *name, const char *version)
{
    if (ra->recorded) {
        fprintf(stderr, "aimedres: the version is registered (and audited as such); what failed is named above\n");
        return;
    }
    int rc = ra->refused ? 0 : audit_registered(ra->audit, ra->cmd, name, version, false, NULL);
    if (rc < 0)
        fprintf(stderr, "aimedres: audit: cannot record the failed registration: %s\n", strerror(-rc));
}

static int run_train_like(int argc, char **argv, bool import)
{
    static const int allowed_train[] = {OPT_DATA,         OPT_LABEL,     OPT_NAME,        OPT_VERSION,
                                        OPT_TASK,         OPT_PARAM,     OPT_ROUNDS,      OPT_SEED,
                                        OPT_VALFRAC,      OPT_DROP,      OPT_UNITS,       OPT_SCHEMA,
                                        OPT_CLASS_LABELS, OPT_THRESHOLD, OPT_DESCRIPTION, OPT_SYNTHETIC,
                                        OPT_SET_STABLE,   OPT_JSON,      OPT_ENV_FILE,    0};
    static const int allowed_import[] = {OPT_BOOSTER,      OPT_DATA,      OPT_LABEL,       OPT_NAME,
                                         OPT_VERSION,      OPT_DROP,      OPT_UNITS,       OPT_SCHEMA,
                                         OPT_CLASS_LABELS, OPT_THRESHOLD, OPT_DESCRIPTION, OPT_SYNTHETIC,
                                         OPT_SET_STABLE,   OPT_JSON,      OPT_ENV_FILE,    OPT_ALL_ROUNDS,
                                         0};
    const char *cmd = import ? "import" : "train";
    void (*help)(FILE *) = import ? usage_import : usage_train;
    int rc = 0;
    cli_opts_t *co = parse_cmd(argc, argv, cmd, import ? allowed_import : allowed_train, NULL, help, &rc);
    if (!co) {
        if (rc == 1)
            fprintf(stderr, "aimedres: out of memory\n");
        return rc;
    }
    const char *missing = !co->t.data_path                ? "--data"
                          : !co->t.label                  ? "--label"
                          : !co->t.name                   ? "--name"
                          : !co->t.version                ? "--version"
                          : import && !co->t.booster_path ? "--booster"
                                                          : NULL;
    if (missing) {
        fprintf(stderr, "aimedres: model %s: %s is required\n", cmd, missing);
        help(stderr);
        free(co);
        return 2;
    }
    config_t *cfg = NULL;
    store_t *store = NULL;
    audit_log_t *audit = NULL; /* audit (issue 5) */
    if (open_env(co->env_file, &cfg, &store, &audit) != 0) {
        free(co);
        return 1;
    }
    co->t.storage_path = cfg->model_storage_path;
    co->t.data_dir = cfg->data_dir;
    co->t.store = store;
    reg_audit_t ra = {.audit = audit, .cmd = cmd};
    const model_register_hook_t hook = {audit_before_commit, audit_recorded, &ra};
    co->t.register_hook = &hook;
    char err[2048] = "";
    json_t *summary = NULL;
    rc = import ? model_import(&co->t, &summary, err, sizeof(err))
                : model_train(&co->t, &summary, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "aimedres: %s\n", err[0] ? err : strerror(-rc));
        log_warning("model registration failed", "{s:s, s:s, s:s}", "command", cmd, "name", co->t.name,
                    "version", co->t.version);
        audit_register_failed(&ra, co->t.name, co->t.version);
        rc = rc == -EINVAL ? 2 : 1; /* train.h: -EINVAL is a wrong option, a usage error */
    } else {
        log_info("model registered", "{s:s, s:s, s:s}", "command", cmd, "name", co->t.name, "version",
                 co->t.version);
        size_t wi;
        json_t *w;
        json_array_foreach(json_object_get(summary, "warnings"), wi, w)
            fprintf(stderr, "aimedres: warning: %s\n", json_string_value(w));
        if (co->json)
            rc = print_json(summary);
        else {
            print_summary(import ? "imported" : "trained", summary);
            rc = 0;
        }
    }
    json_decref(summary);
    close_env(cfg, store, audit);
    free(co);
    return rc;
}

static int run_register(int argc, char **argv)
{
    static const int allowed[] = {OPT_SET_STABLE, OPT_JSON, OPT_ENV_FILE, 0};
    int rc = 0;
    cli_opts_t *co = parse_cmd(argc, argv, "register", allowed, "PATH", usage_register, &rc);
    if (!co)
        return rc;
    config_t *cfg = NULL;
    store_t *store = NULL;
    audit_log_t *audit = NULL; /* audit (issue 5) */
    if (open_env(co->env_file, &cfg, &store, &audit) != 0) {
        free(co);
        return 1;
    }
    char err[2048] = "";
    json_t *info = NULL;
    reg_audit_t ra = {.audit = audit, .cmd = "register"};
    const model_register_hook_t hook = {audit_before_commit, audit_recorded, &ra};
    rc = model_register_hooked(store, cfg->model_storage_path, co->positional[0], co->t.set_stable, &hook, &info,
                               err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "aimedres: %s\n", err[0] ? err : strerror(-rc));
        audit_register_failed(&ra, co->positional[0], NULL);
        rc = 1;
    } else {
        log_info("model registered", "{s:s, s:s, s:s}", "command", "register", "name",
                 json_string_value(json_object_get(info, "name")), "version",
                 json_string_value(json_object_get(info, "version")));
        if (co->json) {
            rc = print_json(info);
        } else {
            printf("registered %s %s at %s%s\n", json_string_value(json_object_get(info, "name")),
                   json_string_value(json_object_get(info, "version")),
                   json_string_value(json_object_get(info, "path")),
                   json_is_true(json_object_get(info, "stable")) ? " (stable)" : "");
            rc = 0;
        }
    }
    json_decref(info);
    close_env(cfg, store, audit);
    free(co);
    return rc;
}

static const char *row_s(const json_t *row, const char *key)
{
    const char *s = json_string_value(json_object_get(row, key));
    return s ? s : "";
}

static int run_list(int argc, char **argv)
{
    static const int allowed[] = {OPT_JSON, OPT_ENV_FILE, 0};
    int rc = 0;
    cli_opts_t *co = parse_cmd(argc, argv, "list", allowed, NULL, usage_list, &rc);
    if (!co)
        return rc;
    config_t *cfg = NULL;
    store_t *store = NULL;
    if (open_env(co->env_file, &cfg, &store, NULL) != 0) {
        free(co);
        return 1;
    }
    json_t *list = NULL;
    rc = store_model_list(store, &list);
    if (rc < 0) {
        fprintf(stderr, "aimedres: cannot read the model registry: %s\n", strerror(-rc));
        rc = 1;
    } else if (co->json) {
        rc = print_json(list);
    } else {
        int wn = 4, wv = 7, wt = 4;
        size_t i;
        json_t *row;
        json_array_foreach(list, i, row)
        {
            int n = (int)strlen(row_s(row, "name")), v = (int)strlen(row_s(row, "version")),
                t = (int)strlen(row_s(row, "task"));
            wn = n > wn ? n : wn;
            wv = v > wv ? v : wv;
            wt = t > wt ? t : wt;
        }
        printf("%-*s  %-*s  %-6s  %-*s  %s\n", wn, "NAME", wv, "VERSION", "STABLE", wt, "TASK",
               "REGISTERED_AT");
        json_array_foreach(list, i, row)
        {
            printf("%-*s  %-*s  %-6s  %-*s  %s\n", wn, row_s(row, "name"), wv, row_s(row, "version"),
                   json_is_true(json_object_get(row, "stable")) ? "yes" : "", wt, row_s(row, "task"),
                   row_s(row, "registered_at"));
        }
        if (json_array_size(list) == 0)
            printf("(no models registered)\n");
        rc = 0;
    }
    json_decref(list);
    close_env(cfg, store, NULL);
    free(co);
    return rc;
}

static void print_manifest(const model_manifest_t *m)
{
    printf("name:        %s\n", m->name);
    printf("version:     %s\n", m->version);
    printf("task:        %s\n", model_task_name(m->task));
    if (m->description)
        printf("description: %s\n", m->description);
    if (m->synthetic)
        printf("synthetic:   yes (trained on synthetic data: not for clinical use)\n");
    if (m->created_at)
        printf("created_at:  %s\n", m->created_at);
    if (m->label)
        printf("label:       %s\n", m->label);
    if (m->n_classes) {
        printf("classes:    ");
        for (size_t i = 0; i < m->n_classes; i++)
            printf(" %zu=%s", i, m->class_labels[i]);
        printf("\n");
    }
    if (m->task == MODEL_TASK_BINARY)
        printf("threshold:   %g\n", m->threshold);
    printf("booster:     %s (%s, sha256 %s)\n", m->booster_file, m->booster_format, m->booster_sha256);
    int wn = 4;
    for (size_t i = 0; i < m->n_features; i++) {
        int n = (int)strlen(m->features[i].name);
        wn = n > wn ? n : wn;
    }
    printf("features (%zu):\n", m->n_features);
    printf("  %-*s  %-7s  %-12s  %-24s  %s\n", wn, "NAME", "TYPE", "UNIT", "VALID RANGE", "REQUIRED");
    for (size_t i = 0; i < m->n_features; i++) {
        const model_feature_t *f = &m->features[i];
        char range[64];
        if (f->has_min && f->has_max)
            snprintf(range, sizeof(range), "[%g, %g]", f->min, f->max);
        else if (f->has_min)
            snprintf(range, sizeof(range), ">= %g", f->min);
        else if (f->has_max)
            snprintf(range, sizeof(range), "<= %g", f->max);
        else
            snprintf(range, sizeof(range), "any");
        printf("  %-*s  %-7s  %-12s  %-24s  %s\n", wn, f->name, feature_type_name(f->type),
               f->unit ? f->unit : "-", range, f->required ? "yes" : "no");
    }
    print_metric_line("training metrics", m->training_metrics);
    print_metric_line("holdout metrics", m->holdout_metrics);
    const char *src = json_string_value(json_object_get(m->holdout_metrics, "source"));
    if (src)
        printf("holdout source: %s\n", src);
}

static int run_show(int argc, char **argv)
{
    static const int allowed[] = {OPT_JSON, OPT_ENV_FILE, 0};
    int rc = 0;
    cli_opts_t *co = parse_cmd(argc, argv, "show", allowed, "NAME", usage_show, &rc);
    if (!co)
        return rc;
    const char *name = co->positional[0];
    config_t *cfg = NULL;
    store_t *store = NULL;
    if (open_env(co->env_file, &cfg, &store, NULL) != 0) {
        free(co);
        return 1;
    }
    json_t *list = NULL, *versions = json_array(), *out = NULL;
    model_manifest_t *m = NULL;
    const json_t *pick = NULL, *stable = NULL;
    rc = store_model_list(store, &list);
    if (rc < 0) {
        fprintf(stderr, "aimedres: cannot read the model registry: %s\n", strerror(-rc));
        rc = 1;
        goto done;
    }
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        if (strcmp(row_s(row, "name"), name) != 0)
            continue;
        json_array_append(versions, row);
        pick = row; /* ordered by registration time: the last is the latest */
        if (json_is_true(json_object_get(row, "stable")))
            stable = row;
    }
    if (!pick) {
        fprintf(stderr, "aimedres: no model named '%s' is registered\n", name);
        rc = 1;
        goto done;
    }
    if (stable)
        pick = stable;
    char err[1024] = "", dir[PATH_MAX];
    /* where serve loads it from (review71 #2) */
    model_version_dir(cfg->model_storage_path, name, row_s(pick, "version"), row_s(pick, "path"), dir, sizeof(dir));
    if (model_manifest_load(dir, &m, err, sizeof(err)) < 0) {
        fprintf(stderr, "aimedres: %s\n", err);
        rc = 1;
        goto done;
    }
    /* what was registered, as serve checks it (review72 #1: another model's files were shown
     * as this one) */
    const char *reg_sha = row_s(pick, "sha256");
    if (strcmp(m->name, name) != 0 || strcmp(m->version, row_s(pick, "version")) != 0 ||
        (reg_sha && strcmp(reg_sha, m->booster_sha256) != 0)) {
        fprintf(stderr, "aimedres: %s holds %s/%s (booster sha256 %s), not the registered %s/%s (%s)\n", dir, m->name,
                m->version, m->booster_sha256, name, row_s(pick, "version"), reg_sha ? reg_sha : "?");
        rc = 1;
        goto done;
    }
    if (co->json) {
        out = json_pack("{s:s, s:o, s:O, s:o}", "name", name, "stable_version",
                        stable ? json_string(row_s(stable, "version")) : json_null(), "versions", versions,
                        "manifest", model_manifest_to_json(m));
        rc = out ? print_json(out) : 1;
    } else {
        print_manifest(m);
        printf("versions:\n");
        json_array_foreach(versions, i, row)
        {
            printf("  %-16s %-6s %-24s sha256 %.12s\n", row_s(row, "version"),
                   json_is_true(json_object_get(row, "stable")) ? "stable" : "", row_s(row, "registered_at"),
                   row_s(row, "sha256"));
        }
        rc = 0;
    }
done:
    json_decref(out);
    json_decref(list);
    json_decref(versions);
    model_manifest_free(m);
    close_env(cfg, store, NULL);
    free(co);
    return rc;
}

static int run_train(int argc, char **argv)
{
    return run_train_like(argc, argv, false);
}

static int run_import(int argc, char **argv)
{
    return run_train_like(argc, argv, true);
}

int cli_model(int argc, char **argv)
{
    static const cli_sub_t subs[] = {{"train", run_train},   {"import", run_import}, {"register", run_register},
                                     {"list", run_list},     {"show", run_show}};
    return cli_dispatch("model", subs, ARRAY_SIZE(subs), usage, argc, argv);
}
