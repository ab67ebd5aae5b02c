/* SPDX-License-Identifier: Apache-2.0 */
/* Model registry: which versions exist (the store) and which are loaded (memory).
 * The server keeps one registry; handlers acquire refcounted handles from it. It
 * reconciles with the store on start, on SIGHUP and whenever the store's registry
 * generation changes (another process registered a model), loading new stable
 * versions aside and swapping them in; in-flight requests keep their old handle.
 *
 * Registration (model_register) is shared by the CLI and the API. */
#ifndef AIMEDRES_MODEL_REGISTRY_H
#define AIMEDRES_MODEL_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>

#include "model/runtime.h"
#include "store/store.h"

typedef struct model_registry model_registry_t;

/* store is borrowed and must outlive the registry. */
int model_registry_new(store_t *store, const char *storage_path, model_registry_t **ret);
void model_registry_free(model_registry_t *r);

/* Reconciles loaded handles with the store: loads each model's stable version,
 * drops models no longer registered. A version that fails to load is logged and the
 * previous handle (if any) keeps serving. Returns the number of changes or <0. */
int model_registry_sync(model_registry_t *r);
/* Calls sync only if the store's registry generation moved since the last sync. */
int model_registry_poll(model_registry_t *r);

/* The directory of a registered version: <storage_path>/<name>/<version> when it is there (the
 * storage this process is configured with, also after the store was moved or restored
 * elsewhere), else the path recorded at registration. What serve, deploy and `model show`
 * open. */
void model_version_dir(const char *storage_path, const char *name, const char *version, const char *stored_path,
                       char *buf, size_t n);
/* The MODEL_STORAGE_PATH the registry was made with. */
const char *model_registry_storage_path(const model_registry_t *r);
/* Opens the version a model list row names (store_model_list) from model_version_dir and
 * checks it is what was registered: the manifest's name and version, the booster's sha256.
 * What serve loads, and what deploy opens for a candidate. 0 with *ret, or -errno with err. */
int model_registry_open_version(model_registry_t *r, const json_t *row, model_handle_t **ret, char *err,
                                size_t errlen);

/* Returns a new reference to the handle for name (version NULL = stable). A pinned
 * registered version that is not loaded is loaded on demand and cached.
 * NULL with *ret_err = -ENOENT (unknown model or version) or another error. */
model_handle_t *model_registry_acquire(model_registry_t *r, const char *name, const char *version,
                                       int *ret_err);
/* Why a model version could not be served: the version that failed to load and its load error
 * as logged (paths relative to MODEL_STORAGE_PATH), for the log line of the request. */
typedef struct model_unavailable {
    char version[160];
    char error[1024];
} model_unavailable_t;
/* model_registry_acquire; when it fails with another error than -ENOENT (a registered version
 * that does not load), *why (if not NULL) says which version and why. */
model_handle_t *model_registry_acquire_why(model_registry_t *r, const char *name, const char *version,
                                           int *ret_err, model_unavailable_t *why);

/* [{"name","version","status","task","features":[names],"traffic":{"<version>":100}}]
 * for every model with a loaded stable version. New reference. */
json_t *model_registry_list_json(model_registry_t *r);
/* Details of one model: {"name","serving_version","versions":[{version,sha256,registered_at,
 * stable,loaded}], "schema":[...features], "task","class_labels","threshold","metrics"}.
 * NULL if unknown. New reference. */
json_t *model_registry_model_json(model_registry_t *r, const char *name);
/* Number of loaded models (for /ready). */
size_t model_registry_loaded_count(model_registry_t *r);
/* Calls fn(name, stable version, arg) for each model with a loaded stable version, under the
 * registry's read lock: fn must be quick and must not call into the registry. */
typedef void (*model_registry_each_fn)(const char *name, const char *version, void *arg);
void model_registry_each_stable(model_registry_t *r, model_registry_each_fn fn, void *arg);
/* Models whose stable version failed to load and that have nothing serving:
 * [{"model","error"}] (for /ready and the monitor's ModelUnavailable alert); error is the load
 * error as logged ("booster sha256 mismatch: ..."), with paths relative to MODEL_STORAGE_PATH.
 * New reference. */
json_t *model_registry_failed_json(model_registry_t *r);

/* Registers the version directory src_dir (manifest.json + booster):
 * checks the name/version are safe path components, the booster's sha256 matches the
 * manifest, the booster loads and predicts on model_schema_probe_row, and the booster's
 * feature count equals the schema's. Copies it into storage_path/<name>/<version>/
 * (aside + rename; skipped when src_dir already is that directory), records it in the
 * store and makes it stable when the model has no stable version or set_stable is true.
 * Any failure changes nothing and explains itself in err. ret_info (optional):
 * {"name","version","sha256","stable":bool,"path"}. */
int model_register(store_t *store, const char *storage_path, const char *src_dir, bool set_stable,
                   json_t **ret_info, char *err, size_t errlen);

/* Called by model_register_hooked once everything is checked and the artifact is in storage,
 * inside the store transaction that records the version, before it writes (holding the
 * store's write lock, so no concurrent registration changes what it is told: review53 #4):
 * non-zero refuses the registration (nothing is recorded, an artifact this call placed is
 * removed), with err written by the hook. The CLI writes the MODEL_REGISTERED audit record
 * here, so that no registration takes effect that the trail does not hold (review47 #3).
 * make_stable: the transaction makes the version the serving one (previous_stable: the
 * version that served until then, NULL if none). */
typedef struct model_register_hook {
    int (*before_commit)(void *arg, const char *name, const char *version, bool make_stable,
                         const char *previous_stable, char *err, size_t errlen);
    /* Called (may be NULL) once the store has recorded the version: whatever fails after it
     * (the caller's own steps) leaves the version registered. */
    void (*recorded)(void *arg);
    void *arg;
} model_register_hook_t;

/* model_register with a hook (NULL: none). */
int model_register_hooked(store_t *store, const char *storage_path, const char *src_dir, bool set_stable,
                          const model_register_hook_t *hook, json_t **ret_info, char *err, size_t errlen);

#endif
