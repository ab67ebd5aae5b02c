/* SPDX-License-Identifier: Apache-2.0 */
/* Compiled trees (see trees.h): the booster's model JSON, as libxgboost writes it, turned
 * into one flat node array. Walking it does exactly what XGBoost's CPU predictor does for
 * numeric splits: missing (NaN) goes to the default child, otherwise value < threshold goes
 * left, all in float32; leaf values are added tree by tree, in order, to a float margin that
 * starts at the model's base margin; then the objective's transform. */
#include "model/trees.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"

#define MAX_NODES_TOTAL (1u << 26) /* 64 Mi nodes: far above any clinical model */
#define MAX_OUTPUTS 4096
#define MAX_TREES_PER_ROUND (1u << 20) /* num_parallel_tree: a random forest of a million trees a round */

typedef enum { OUT_IDENTITY, OUT_SIGMOID, OUT_SOFTMAX } transform_t;

typedef struct node {
    int32_t left; /* -1 for a leaf; children are indexes into the same tree */
    int32_t right;
    uint32_t feature;
    uint32_t default_left;
    float value; /* threshold, or the leaf value */
} node_t;

struct model_trees {
    size_t n_features;
    size_t outputs;
    size_t n_trees;
    node_t *nodes;
    uint32_t *root; /* first node of each tree in nodes */
    uint32_t *group; /* output each tree adds to */
    float base_margin;
    transform_t transform;
    /* per feature, the thresholds the trees test (for probe rows) */
    float **thresholds;
    size_t *n_thresholds;
};

static int fail(char *err, size_t errlen, int rc, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return rc;
}

static const json_t *array_of(const json_t *tree, const char *key, size_t n)
{
    const json_t *a = json_object_get(tree, key);
    return json_is_array(a) && json_array_size(a) == n ? a : NULL;
}

static bool int_at(const json_t *a, size_t i, long long *ret)
{
    const json_t *v = json_array_get(a, i);
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return true;
    }
    if (json_is_true(v) || json_is_false(v)) {
        *ret = json_is_true(v);
        return true;
    }
    return false;
}

/* A number that xgboost wrote (a JSON number, or a string such as "5E-1" in the params). */
static bool float_of(const json_t *v, float *ret)
{
    if (json_is_number(v)) {
        *ret = (float)json_number_value(v);
        return true;
    }
    if (json_is_string(v)) {
        char *end;
        errno = 0;
        float f = strtof(json_string_value(v), &end);
        if (errno || end == json_string_value(v) || *end)
            return false;
        *ret = f;
        return true;
    }
    return false;
}

/* A whole number as xgboost writes its parameters: a decimal string ("5") or an integer. */
static bool count_of(const json_t *v, long long *ret)
{
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *ret = n;
    return true;
}

/* The tree-model parameters libxgboost trusts as it loads the trees (review51 #1): each tree's
 * "id" indexes the tree array (a repeated id left a slot empty: SIGSEGV), num_trees sizes
 * tree_info (read past its end, or an 8 GB allocation), and num_parallel_tree times the
 * outputs divides the tree count in 32 bits (a product wrapping to 0: SIGFPE). XGBoost writes
 * id = index, num_trees = the count, and num_parallel_tree of at least 1 whose groups fit. */
static int check_tree_params(const json_t *model, const json_t *trees, size_t outputs, char *err, size_t errlen)
{
    size_t nt = json_array_size(trees);
    const json_t *gp = json_object_get(model, "gbtree_model_param");
    long long n, npt = 1;
    if (!count_of(json_object_get(gp, "num_trees"), &n) || n < 0 || (size_t)n != nt) {
        snprintf(err, errlen, "gbtree_model_param.num_trees is not the number of trees (%zu)", nt);
        return -EINVAL;
    }
    /* XGBoost before 1.6 did not write num_parallel_tree (libxgboost reads it as 1: review53
     * #1). A count whose rounds do not divide the trees makes libxgboost (and the holdout
     * metrics) read fewer trees than the served predictor (review53 #6). */
    const json_t *jnpt = json_object_get(gp, "num_parallel_tree");
    if ((jnpt && !count_of(jnpt, &npt)) || npt < 1 || npt > (long long)MAX_TREES_PER_ROUND ||
        (nt > 0 && nt % ((size_t)npt * outputs) != 0) || (nt == 0 && npt > 1)) {
        snprintf(err, errlen,
                 "gbtree_model_param.num_parallel_tree is not a count of at least 1 whose trees per round (times "
                 "%zu output%s) divide the booster's %zu trees",
                 outputs, outputs == 1 ? "" : "s", nt);
        return -EINVAL;
    }
    for (size_t i = 0; i < nt; i++) {
        long long id;
        if (!count_of(json_object_get(json_array_get(trees, i), "id"), &id) || id < 0 || (size_t)id != i) {
            snprintf(err, errlen, "tree %zu has id %s; XGBoost numbers its trees by their place (%zu)", i,
                     json_is_integer(json_object_get(json_array_get(trees, i), "id")) ? "out of place" : "missing",
                     i);
            return -EINVAL;
        }
    }
    return 0;
}

static int read_objective(model_trees_t *t, const json_t *learner, char *err, size_t errlen)
{
    const char *obj = json_string_value(json_object_get(json_object_get(learner, "objective"), "name"));
    const json_t *mp = json_object_get(learner, "learner_model_param");
    float base;
    if (!obj || !float_of(json_object_get(mp, "base_score"), &base))
        return fail(err, errlen, -ENOTSUP, "no objective or base_score in the model");
    static const char *const identity[] = {"reg:squarederror", "reg:linear", "reg:squaredlogerror",
                                           "reg:pseudohubererror", "reg:absoluteerror"};
    if (strcmp(obj, "binary:logistic") == 0 || strcmp(obj, "reg:logistic") == 0) {
        if (t->outputs != 1 || !(base > 0.0f && base < 1.0f))
            return fail(err, errlen, -ENOTSUP, "logistic objective with an unexpected shape or base_score");
        t->transform = OUT_SIGMOID;
        t->base_margin = -logf(1.0f / base - 1.0f); /* XGBoost's ProbToMargin, in float */
        return 0;
    }
    if (strcmp(obj, "multi:softprob") == 0) {
        if (t->outputs < 2)
            return fail(err, errlen, -ENOTSUP, "multi:softprob with fewer than two outputs");
        t->transform = OUT_SOFTMAX;
        t->base_margin = base;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(identity); i++) {
        if (strcmp(obj, identity[i]) == 0) {
            if (t->outputs != 1)
                return fail(err, errlen, -ENOTSUP, "regression objective with several outputs");
            t->transform = OUT_IDENTITY;
            t->base_margin = base;
            return 0;
        }
    }
    snprintf(err, errlen, "objective '%.64s' is left to libxgboost", obj);
    return -ENOTSUP;
}

static int add_threshold(model_trees_t *t, uint32_t f, float v)
{
    size_t n = t->n_thresholds[f];
    if ((n & (n - 1)) == 0) { /* 0, 1, 2, 4...: grow by doubling */
        float *p = realloc(t->thresholds[f], (n ? 2 * n : 1) * sizeof(float));
        if (!p)
            return -ENOMEM;
        t->thresholds[f] = p;
    }
    t->thresholds[f][n] = v;
    t->n_thresholds[f] = n + 1;
    return 0;
}

/* One tree's arrays into nodes[first..first+n). Refuses anything the walk could not take
 * safely or that XGBoost would evaluate differently (categorical splits, vector leaves). */
static int read_tree(model_trees_t *t, const json_t *tree, uint32_t first, size_t n, char *err, size_t errlen)
{
    const json_t *left = array_of(tree, "left_children", n), *right = array_of(tree, "right_children", n),
                 *feat = array_of(tree, "split_indices", n), *cond = array_of(tree, "split_conditions", n),
                 *dl = array_of(tree, "default_left", n);
    if (!left || !right || !feat || !cond || !dl)
        return fail(err, errlen, -ENOTSUP, "a tree lacks one of its node arrays");
    const json_t *st = json_object_get(tree, "split_type");
    const json_t *cats = json_object_get(tree, "categories");
    if (json_array_size(cats) > 0)
        return fail(err, errlen, -ENOTSUP, "categorical splits are left to libxgboost");
    const json_t *tp = json_object_get(tree, "tree_param");
    const char *leaf_vec = json_string_value(json_object_get(tp, "size_leaf_vector"));
    if (leaf_vec && strcmp(leaf_vec, "0") != 0)
        return fail(err, errlen, -ENOTSUP, "vector leaves are left to libxgboost");
    for (size_t i = 0; i < n; i++) {
        long long l, r, f, d, s = 0;
        float v;
        if (!int_at(left, i, &l) || !int_at(right, i, &r) || !int_at(feat, i, &f) || !int_at(dl, i, &d) ||
            !float_of(json_array_get(cond, i), &v) || (st && !int_at(st, i, &s)))
            return fail(err, errlen, -EINVAL, "a tree node has a malformed field");
        if (s != 0)
            return fail(err, errlen, -ENOTSUP, "categorical splits are left to libxgboost");
        node_t *nd = &t->nodes[first + i];
        nd->value = v;
        if (l == -1) {
            if (r != -1)
                return fail(err, errlen, -EINVAL, "a tree node has one child");
            nd->left = nd->right = -1;
            continue;
        }
        /* children after their parent: the walk always moves forward and ends */
        if (l <= (long long)i || r <= (long long)i || l >= (long long)n || r >= (long long)n)
            return fail(err, errlen, -ENOTSUP, "a tree's child index is out of order or range");
        if (f < 0 || (size_t)f >= t->n_features)
            return fail(err, errlen, -EINVAL, "a split tests a feature the model does not have");
        if (isnan(v))
            return fail(err, errlen, -EINVAL, "a split threshold is not a number");
        nd->left = (int32_t)l;
        nd->right = (int32_t)r;
        nd->feature = (uint32_t)f;
        nd->default_left = d != 0;
        if (add_threshold(t, (uint32_t)f, v) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The model JSON as jansson can read it: libxgboost writes NaN (and +-Infinity) as bare
 * tokens, for instance in the split conditions of categorical nodes; outside strings they
 * become null. Counts the keys and values on the way (each ',' and ':' outside strings, and
 * each '[' and '{' as MODEL_BOOSTER_CONTAINER_WEIGHT: an upper bound), and gives up past
 * MODEL_BOOSTER_MAX_VALUES, before jansson builds them: NULL with *too_large set. */
static json_t *load_model_json(const char *json, size_t len, json_error_t *jerr, bool *too_large)
{
    size_t units = 0;
    *too_large = false;
    char *copy = malloc(len / 3 * 4 + 16); /* "NaN" (3 bytes) -> "null" (4) at worst */
    if (!copy) {
        snprintf(jerr->text, sizeof(jerr->text), "out of memory");
        return NULL;
    }
    size_t o = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (in_str) {
            copy[o++] = c;
            if (c == '\\' && i + 1 < len)
                copy[o++] = json[++i];
            else if (c == '"')
                in_str = false;
            continue;
        }
        static const char *const bare[] = {"-Infinity", "Infinity", "NaN"};
        size_t k = 0;
        for (; k < ARRAY_SIZE(bare); k++)
            if (len - i >= strlen(bare[k]) && memcmp(json + i, bare[k], strlen(bare[k])) == 0)
                break;
        if (k < ARRAY_SIZE(bare)) {
            memcpy(copy + o, "null", 4);
            o += 4;
            i += strlen(bare[k]) - 1;
            continue;
        }
        in_str = c == '"';
        if (c == ',' || c == ':' || c == '[' || c == '{')
            units += c == '[' || c == '{' ? MODEL_BOOSTER_CONTAINER_WEIGHT : 1;
        if (units > MODEL_BOOSTER_MAX_VALUES) {
            free(copy);
            *too_large = true;
            snprintf(jerr->text, sizeof(jerr->text), "too large");
            return NULL;
        }
        copy[o++] = c;
    }
    json_t *root = json_loadb(copy, o, JSON_ALLOW_NUL, jerr);
    free(copy);
    return root;
}

/* One tree of a booster about to be trusted by libxgboost (see model_trees_check). */
static int check_tree(const json_t *tree, size_t ti, size_t n_features, char *err, size_t errlen)
{
    const json_t *left = json_object_get(tree, "left_children");
    size_t n = json_array_size(left);
    const json_t *right = array_of(tree, "right_children", n), *feat = array_of(tree, "split_indices", n);
    const json_t *stype = json_object_get(tree, "split_type");
    if (n == 0 || !right || !feat || (stype && json_array_size(stype) != n)) {
        snprintf(err, errlen, "tree %zu has no nodes or node arrays of different lengths", ti);
        return -EINVAL;
    }
    /* libxgboost trusts "parents" too (review49 #2: one out of range crashed the import) */
    const json_t *parents = json_object_get(tree, "parents");
    if (parents && json_array_size(parents) != n) {
        snprintf(err, errlen, "tree %zu has %zu parents for %zu nodes", ti, json_array_size(parents), n);
        return -EINVAL;
    }
    for (size_t i = 0; parents && i < n; i++) {
        long long par;
        /* the root's parent is 2147483647 (XGBoost's kInvalidNodeId as unsigned), or -1 */
        if (!int_at(parents, i, &par) || !((par >= 0 && (size_t)par < n) || (i == 0 && (par == -1 ||
                                                                                        par == 2147483647)))) {
            snprintf(err, errlen, "tree %zu node %zu has a parent outside the tree", ti, i);
            return -EINVAL;
        }
    }
    /* categorical splits: libxgboost reads categories[segment .. segment+size) for each node
     * listed, trusting all three */
    const json_t *cats = json_object_get(tree, "categories"), *cnodes = json_object_get(tree, "categories_nodes"),
                 *csegs = json_object_get(tree, "categories_segments"),
                 *csizes = json_object_get(tree, "categories_sizes");
    size_t nc = json_array_size(cnodes), ncat = json_array_size(cats);
    if (json_array_size(csegs) != nc || json_array_size(csizes) != nc) {
        snprintf(err, errlen, "tree %zu has categorical arrays of different lengths", ti);
        return -EINVAL;
    }
    for (size_t k = 0; k < nc; k++) {
        long long node, seg, size, st = 0, l = -1, prev = -1;
        if (!int_at(cnodes, k, &node) || !int_at(csegs, k, &seg) || !int_at(csizes, k, &size) || node < 0 ||
            (size_t)node >= n || seg < 0 || size < 0 || (size_t)seg > ncat || (size_t)size > ncat - (size_t)seg) {
            snprintf(err, errlen, "tree %zu categorical split %zu points outside its node or category arrays", ti, k);
            return -EINVAL;
        }
        /* listed once, in order, and only for a split node marked categorical */
        if ((k > 0 && (!int_at(cnodes, k - 1, &prev) || prev >= node)) || !stype || !int_at(stype, (size_t)node, &st) ||
            st != 1 || !int_at(left, (size_t)node, &l) || l == -1) {
            snprintf(err, errlen, "tree %zu categorical split %zu names node %lld, which is not a categorical split", ti,
                     k, node);
            return -EINVAL;
        }
    }
    for (size_t k = 0; k < ncat; k++) {
        long long c;
        if (!int_at(cats, k, &c) || c < 0 || c > INT32_MAX) {
            snprintf(err, errlen, "tree %zu category %zu is not a category number (0..2^31-1)", ti, k);
            return -EINVAL;
        }
    }
    /* and every node marked categorical is listed */
    for (size_t i = 0, k = 0; stype && i < n; i++) {
        long long st = 0, node = -1;
        if (!int_at(stype, i, &st) || st == 0)
            continue;
        while (k < nc && int_at(cnodes, k, &node) && node < (long long)i)
            k++;
        if (st != 1 || k >= nc || !int_at(cnodes, k, &node) || node != (long long)i) {
            snprintf(err, errlen, "tree %zu node %zu is marked categorical but has no categories", ti, i);
            return -EINVAL;
        }
    }
    unsigned char *seen = calloc(n, 1);
    uint32_t *stack = malloc(n * sizeof(*stack));
    int rc = 0;
    if (!seen || !stack) {
        rc = -ENOMEM;
        goto out;
    }
    /* every node reachable from the root, reached once: no loop, no shared child, no index
     * outside the tree, every split on a feature the booster has */
    size_t top = 0;
    stack[top++] = 0;
    seen[0] = 1;
    while (top > 0) {
        size_t i = stack[--top];
        long long l, r, f;
        if (!int_at(left, i, &l) || !int_at(right, i, &r) || !int_at(feat, i, &f)) {
            snprintf(err, errlen, "tree %zu node %zu has a malformed field", ti, i);
            rc = -EINVAL;
            goto out;
        }
        if (l == -1 && r == -1)
            continue;
        if (l < 0 || r < 0 || (size_t)l >= n || (size_t)r >= n) {
            snprintf(err, errlen, "tree %zu node %zu has a child index outside the tree (%lld, %lld of %zu nodes)",
                     ti, i, l, r, n);
            rc = -EINVAL;
            goto out;
        }
        if (f < 0 || (size_t)f >= n_features) {
            snprintf(err, errlen, "tree %zu node %zu splits on feature %lld; the booster has %zu features", ti, i,
                     f, n_features);
            rc = -EINVAL;
            goto out;
        }
        if (l == r || seen[l] || seen[r]) {
            snprintf(err, errlen, "tree %zu node %zu leads back to a node already reached (a loop or a shared child)",
                     ti, i);
            rc = -EINVAL;
            goto out;
        }
        seen[l] = seen[r] = 1;
        stack[top++] = (uint32_t)l;
        stack[top++] = (uint32_t)r;
    }
out:
    free(seen);
    free(stack);
    return rc;
}

int model_trees_check_doc(const json_t *root, size_t n_features, size_t outputs, char *err, size_t errlen)
{
    int rc = 0;
    const json_t *learner = json_object_get(root, "learner");
    if (n_features == 0) { /* a file not loaded yet: its own parameters say */
        const json_t *mp = json_object_get(learner, "learner_model_param");
        float nf = 0, ncl = 0;
        if (!float_of(json_object_get(mp, "num_feature"), &nf) || !(nf >= 1 && nf <= 1e6) ||
            (json_object_get(mp, "num_class") && !float_of(json_object_get(mp, "num_class"), &ncl)) ||
            !(ncl >= 0 && ncl <= MAX_OUTPUTS)) {
            snprintf(err, errlen, "the model JSON has no plausible learner_model_param (num_feature, num_class)");
            rc = -EINVAL;
            goto out;
        }
        n_features = (size_t)nf;
        outputs = ncl >= 2 ? (size_t)ncl : 1;
        float nt = 1;
        if (json_object_get(mp, "num_target") && float_of(json_object_get(mp, "num_target"), &nt) && nt > 1) {
            /* said as such, not as a malformed tree group (review49 #4) */
            snprintf(err, errlen, "multi-output boosters (num_target=%.0f) are not supported", nt);
            rc = -ENOTSUP;
            goto out;
        }
        /* base_score must be one number: XGBoost 3.1 and later write a vector ("[3.7E-1]", one
         * per class for multi:*), which this libxgboost reads as 0.5 without a word (review49 #1) */
        float base;
        const json_t *bs = json_object_get(mp, "base_score");
        if (bs && !float_of(bs, &base)) {
            snprintf(err, errlen,
                     "base_score is %.40s, not one number: the booster was saved by XGBoost 3.1 or later, whose "
                     "intercepts this server's libxgboost would ignore (predicting wrongly); save it with an "
                     "XGBoost before 3.1",
                     json_is_string(bs) ? json_string_value(bs) : "not a number");
            rc = -EINVAL;
            goto out;
        }
    }
    const json_t *gb = json_object_get(learner, "gradient_booster");
    const char *name = json_string_value(json_object_get(gb, "name"));
    const json_t *model = NULL;
    if (name && strcmp(name, "gbtree") == 0)
        model = json_object_get(gb, "model");
    else if (name && strcmp(name, "dart") == 0)
        model = json_object_get(json_object_get(gb, "gbtree"), "model");
    if (name && strcmp(name, "gblinear") == 0) {
        size_t w = json_array_size(json_object_get(json_object_get(gb, "model"), "weights"));
        if (w != (n_features + 1) * outputs) {
            snprintf(err, errlen, "the linear booster has %zu weights; %zu features and %zu outputs need %zu", w,
                     n_features, outputs, (n_features + 1) * outputs);
            rc = -EINVAL;
        }
        goto out;
    }
    if (!model) {
        snprintf(err, errlen, "the model JSON has no trees where %s keeps them", name ? name : "a booster");
        rc = -EINVAL;
        goto out;
    }
    const json_t *trees = json_object_get(model, "trees"), *info = json_object_get(model, "tree_info");
    size_t nt = json_array_size(trees);
    if (json_array_size(info) != nt) {
        snprintf(err, errlen, "the model has %zu trees but %zu tree_info entries", nt, json_array_size(info));
        rc = -EINVAL;
        goto out;
    }
    if ((rc = check_tree_params(model, trees, outputs, err, errlen)) < 0)
        goto out;
    for (size_t i = 0; i < nt && rc == 0; i++) {
        long long g;
        if (!int_at(info, i, &g) || g < 0 || (size_t)g >= outputs) {
            snprintf(err, errlen, "tree %zu adds to output %lld; the booster has %zu", i,
                     int_at(info, i, &g) ? g : -1LL, outputs);
            rc = -EINVAL;
        } else {
            rc = check_tree(json_array_get(trees, i), i, n_features, err, errlen);
        }
    }
out:
    return rc;
}

/* The parsed model JSON, or NULL with err said: -E2BIG (too large) or -EINVAL in *rc. */
static json_t *parse_model(const char *json, size_t len, int *rc, char *err, size_t errlen)
{
    json_error_t jerr;
    bool too_large;
    json_t *root = load_model_json(json, len, &jerr, &too_large);
    if (!root) {
        *rc = too_large ? -E2BIG : -EINVAL;
        if (too_large)
            snprintf(err, errlen, "%s", MODEL_BOOSTER_TOO_LARGE);
        else
            snprintf(err, errlen, "cannot parse the model JSON: %s", jerr.text);
    }
    return root;
}

int model_trees_check(const char *json, size_t len, size_t n_features, size_t outputs, char *err, size_t errlen)
{
    int prc = 0;
    json_t *root = parse_model(json, len, &prc, err, errlen);
    if (!root)
        return prc;
    int rc = model_trees_check_doc(root, n_features, outputs, err, errlen);
    json_decref(root);
    return rc;
}

int model_trees_from_json(const char *json, size_t len, size_t n_features, size_t outputs,
                          model_trees_t **ret, char *err, size_t errlen)
{
    if (n_features == 0 || outputs == 0 || outputs > MAX_OUTPUTS)
        return fail(err, errlen, -EINVAL, "implausible feature or output count");
    int prc = 0;
    json_t *root = parse_model(json, len, &prc, err, errlen);
    if (!root)
        return prc;
    int r;
    model_trees_t *t = calloc(1, sizeof(*t));
    if (!t) {
        json_decref(root);
        return -ENOMEM;
    }
    t->n_features = n_features;
    t->outputs = outputs;
    const json_t *learner = json_object_get(root, "learner");
    const json_t *gb = json_object_get(learner, "gradient_booster");
    const char *gbname = json_string_value(json_object_get(gb, "name"));
    if (!gbname || strcmp(gbname, "gbtree") != 0) {
        r = fail(err, errlen, -ENOTSUP, "only gbtree boosters are compiled (dart and gblinear use libxgboost)");
        goto out;
    }
    r = read_objective(t, learner, err, errlen);
    if (r < 0)
        goto out;
    const json_t *model = json_object_get(gb, "model");
    const json_t *trees = json_object_get(model, "trees"), *info = json_object_get(model, "tree_info");
    t->n_trees = json_array_size(trees);
    if (!json_is_array(trees) || t->n_trees == 0 || json_array_size(info) != t->n_trees) {
        r = fail(err, errlen, -ENOTSUP, "the model has no trees or no tree_info");
        goto out;
    }
    size_t total = 0;
    for (size_t i = 0; i < t->n_trees; i++) {
        size_t n = json_array_size(json_object_get(json_array_get(trees, i), "left_children"));
        if (n == 0 || n > MAX_NODES_TOTAL - total) {
            r = fail(err, errlen, -ENOTSUP, "a tree is empty or the model is too large");
            goto out;
        }
        total += n;
    }
    t->nodes = calloc(total, sizeof(*t->nodes));
    t->root = calloc(t->n_trees, sizeof(*t->root));
    t->group = calloc(t->n_trees, sizeof(*t->group));
    t->thresholds = calloc(n_features, sizeof(*t->thresholds));
    t->n_thresholds = calloc(n_features, sizeof(*t->n_thresholds));
    if (!t->nodes || !t->root || !t->group || !t->thresholds || !t->n_thresholds) {
        r = -ENOMEM;
        goto out;
    }
    uint32_t first = 0;
    for (size_t i = 0; i < t->n_trees; i++) {
        const json_t *tree = json_array_get(trees, i);
        size_t n = json_array_size(json_object_get(tree, "left_children"));
        long long g;
        if (!int_at(info, i, &g) || g < 0 || (size_t)g >= outputs) {
            r = fail(err, errlen, -ENOTSUP, "a tree's output group is out of range");
            goto out;
        }
        t->root[i] = first;
        t->group[i] = (uint32_t)g;
        r = read_tree(t, tree, first, n, err, errlen);
        if (r < 0)
            goto out;
        first += (uint32_t)n;
    }
    r = 0;
out:
    json_decref(root);
    if (r < 0)
        model_trees_free(t);
    else
        *ret = t;
    return r;
}

static float walk(const node_t *nodes, const float *row)
{
    const node_t *base = nodes;
    const node_t *nd = base;
    while (nd->left >= 0) {
        float v = row[nd->feature];
        int32_t next = isnan(v) ? (nd->default_left ? nd->left : nd->right) : (v < nd->value ? nd->left : nd->right);
        nd = base + next;
    }
    return nd->value;
}

void model_trees_predict(const model_trees_t *t, const float *rows, size_t nrows, float *out)
{
    for (size_t r = 0; r < nrows; r++) {
        const float *row = rows + r * t->n_features;
        float *o = out + r * t->outputs;
        for (size_t k = 0; k < t->outputs; k++)
            o[k] = t->base_margin;
        for (size_t i = 0; i < t->n_trees; i++)
            o[t->group[i]] += walk(t->nodes + t->root[i], row);
        switch (t->transform) {
        case OUT_IDENTITY:
            break;
        case OUT_SIGMOID:
            o[0] = 1.0f / (1.0f + expf(-o[0]));
            break;
        case OUT_SOFTMAX: {
            float wmax = o[0];
            for (size_t k = 1; k < t->outputs; k++)
                wmax = o[k] > wmax ? o[k] : wmax;
            double wsum = 0.0;
            for (size_t k = 0; k < t->outputs; k++) {
                o[k] = expf(o[k] - wmax);
                wsum += o[k];
            }
            for (size_t k = 0; k < t->outputs; k++)
                o[k] /= (float)wsum;
            break;
        }
        }
    }
}

void model_trees_probe_rows(const model_trees_t *t, float *rows, size_t nrows)
{
    rng_state_t rng;
    rng_seed(&rng, 0x7265657473ull); /* fixed: the same probes every load */
    for (size_t r = 0; r < nrows; r++) {
        for (size_t f = 0; f < t->n_features; f++) {
            float *v = &rows[r * t->n_features + f];
            size_t n = t->n_thresholds[f];
            size_t pick = rng_below(&rng, 8);
            if (pick == 0 || n == 0) {
                *v = pick == 0 ? NAN : (float)(rng_uniform(&rng) * 200.0 - 100.0);
                continue;
            }
            float th = t->thresholds[f][rng_below(&rng, n)];
            switch (pick) {
            case 1:
                *v = nextafterf(th, -INFINITY);
                break;
            case 2:
                *v = nextafterf(th, INFINITY);
                break;
            case 3:
                *v = -3.0e38f;
                break;
            case 4:
                *v = 3.0e38f;
                break;
            default:
                *v = th;
                break;
            }
        }
    }
}

void model_trees_free(model_trees_t *t)
{
    if (!t)
        return;
    for (size_t f = 0; t->thresholds && f < t->n_features; f++)
        free(t->thresholds[f]);
    free(t->thresholds);
    free(t->n_thresholds);
    free(t->nodes);
    free(t->root);
    free(t->group);
    free(t);
}
