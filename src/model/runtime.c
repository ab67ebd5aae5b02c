/* SPDX-License-Identifier: Apache-2.0 */
/* Model runtime: opens a version directory into a refcounted handle (manifest checked
 * against the booster: sha256, feature count and order, task), predicts through the
 * backend and shapes raw outputs into the API's per-row answer. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/runtime.h"

/* DESIGN: a handle is immutable after open except for its reference count, so any
 * number of threads may use it concurrently (the backend guarantees predict() is
 * thread safe). The registry owns one reference per slot it installs the handle in;
 * each request takes its own. The last unref frees the backend state. */
struct model_handle {
    atomic_long refs;
    model_manifest_t *manifest;
    char *dir;
    const model_backend_t *backend;
    void *state;
    size_t outputs;
};

static const model_backend_t *backend_by_name(const char *name)
{
    if (name && strcmp(name, model_backend_xgboost.name) == 0)
        return &model_backend_xgboost;
    return NULL;
}

static void handle_free(model_handle_t *h)
{
    if (h->state)
        h->backend->free(h->state);
    model_manifest_free(h->manifest);
    free(h->dir);
    free(h);
}

/* The booster's own feature names (if it stores any) must equal the manifest's, in
 * order: a silently permuted column would give confident wrong answers. */
static int check_feature_names(const model_handle_t *h, char *err, size_t errlen)
{
    const char **names = NULL;
    size_t n = 0;
    if (!h->backend->feature_names || h->backend->feature_names(h->state, &names, &n) < 0 || n == 0)
        return 0;
    const model_manifest_t *m = h->manifest;
    if (n != m->n_features) {
        snprintf(err, errlen, "booster names %zu features, manifest lists %zu", n, m->n_features);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], m->features[i].name) != 0) {
            snprintf(err, errlen, "feature %zu is '%.128s' in the booster but '%.128s' in the manifest", i,
                     names[i], m->features[i].name);
            return -EINVAL;
        }
    return 0;
}

int model_handle_open(const char *dir, model_handle_t **ret, char *err, size_t errlen)
{
    int r;
    char path[4096];
    char sha[SHA256_HEX_LEN];
    model_handle_t *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    atomic_init(&h->refs, 1);
    h->dir = strdup(dir);
    if (!h->dir) {
        r = -ENOMEM;
        goto fail;
    }
    r = model_manifest_load(dir, &h->manifest, err, errlen);
    if (r < 0)
        goto fail;
    const model_manifest_t *m = h->manifest;
    h->backend = backend_by_name(m->backend);
    if (!h->backend) {
        snprintf(err, errlen, "unsupported backend '%.32s'", m->backend ? m->backend : "");
        r = -ENOTSUP;
        goto fail;
    }
    if (snprintf(path, sizeof(path), "%s/%s", dir, m->booster_file) >= (int)sizeof(path)) {
        snprintf(err, errlen, "booster path too long");
        r = -ENAMETOOLONG;
        goto fail;
    }
    r = util_sha256_file(path, sha);
    if (r < 0) {
        snprintf(err, errlen, "cannot read booster %s: %s", path, strerror(-r));
        goto fail;
    }
    if (strcmp(sha, m->booster_sha256) != 0) {
        snprintf(err, errlen, "booster sha256 mismatch: manifest says %s, file is %s", m->booster_sha256,
                 sha);
        r = -EBADMSG;
        goto fail;
    }
    r = h->backend->load(path, &h->state, err, errlen);
    if (r < 0)
        goto fail;
    size_t nf = 0;
    r = h->backend->num_features(h->state, &nf);
    if (r < 0) {
        snprintf(err, errlen, "cannot read the booster's feature count");
        goto fail;
    }
    if (nf != m->n_features) {
        snprintf(err, errlen, "booster expects %zu features, manifest lists %zu", nf, m->n_features);
        r = -EINVAL;
        goto fail;
    }
    r = check_feature_names(h, err, errlen);
    if (r < 0)
        goto fail;
    model_task_t task = m->task;
    size_t outputs = m->task == MODEL_TASK_MULTICLASS ? m->n_classes : 1;
    if (h->backend->task) {
        r = h->backend->task(h->state, &task, &outputs);
        if (r < 0) {
            snprintf(err, errlen, "cannot read the booster's task");
            goto fail;
        }
    }
    if (task != m->task) {
        snprintf(err, errlen, "booster objective is a %s model, manifest says %s", model_task_name(task),
                 model_task_name(m->task));
        r = -EINVAL;
        goto fail;
    }
    if (m->task == MODEL_TASK_MULTICLASS && outputs != m->n_classes) {
        snprintf(err, errlen, "booster predicts %zu classes, manifest lists %zu class labels", outputs,
                 m->n_classes);
        r = -EINVAL;
        goto fail;
    }
    h->outputs = m->task == MODEL_TASK_MULTICLASS ? m->n_classes : 1;
    *ret = h;
    return 0;
fail:
    handle_free(h);
    return r;
}

model_handle_t *model_handle_ref(model_handle_t *h)
{
    if (h)
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void model_handle_unref(model_handle_t *h)
{
    if (!h)
        return;
    /* Release on every drop, acquire before freeing: all uses happen-before the free. */
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
        handle_free(h);
}

const model_manifest_t *model_handle_manifest(const model_handle_t *h)
{
    return h->manifest;
}

const char *model_handle_dir(const model_handle_t *h)
{
    return h->dir;
}

size_t model_handle_outputs(const model_handle_t *h)
{
    return h->outputs;
}

int model_handle_predict(model_handle_t *h, const float *rows, size_t nrows, float *out, char *err,
                         size_t errlen)
{
    if (nrows == 0)
        return 0;
    int r = h->backend->predict(h->state, rows, nrows, h->manifest->n_features, out, h->outputs, err, errlen);
    if (r < 0)
        return -EIO;
    /* an overflowing leaf sum or a broken booster: no answer rather than a null one */
    for (size_t i = 0; i < nrows * h->outputs; i++) {
        if (!isfinite(out[i])) {
            snprintf(err, errlen, "row %zu: the booster produced a non-finite output (%s)", i / h->outputs,
                     isnan(out[i]) ? "NaN" : "infinity");
            return -EIO;
        }
    }
    return 0;
}

/* JSON has no NaN: a non-finite output (a broken booster) becomes null. */
static json_t *real(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *model_handle_row_result(const model_handle_t *h, const float *out_row)
{
    const model_manifest_t *m = h->manifest;
    if (m->task == MODEL_TASK_REGRESSION)
        return json_pack("{s:o}", "value", real(out_row[0]));
    json_t *probs = json_object();
    if (!probs)
        return NULL;
    size_t best = 0;
    if (m->task == MODEL_TASK_BINARY) {
        double p = out_row[0];
        best = p >= m->threshold ? 1 : 0;
        json_object_set_new(probs, m->class_labels[0], real(1.0 - p));
        json_object_set_new(probs, m->class_labels[1], real(p));
    } else {
        for (size_t i = 0; i < m->n_classes; i++) {
            /* First maximum wins ties, as numpy's argmax does. */
            if (out_row[i] > out_row[best])
                best = i;
            json_object_set_new(probs, m->class_labels[i], real(out_row[i]));
        }
    }
    return json_pack("{s:s, s:o}", "label", m->class_labels[best], "probabilities", probs);
}
