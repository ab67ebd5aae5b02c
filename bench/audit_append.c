/* SPDX-License-Identifier: Apache-2.0 */
/* Audit append benchmark driver for bench/audit_bench.sh: appends MODEL_INFERENCE-sized
 * records to a fresh log for a fixed time through the public API (audit/audit.h) and prints
 * the rate. Modes: "sync" = each thread waits for every record (audit_log_append_sync: one
 * writer, N callers, so the group commit shows as N grows); "pipe" = each thread keeps up to
 * 256 submits in flight (audit_log_submit, like the server's predict path under load).
 * Usage: audit_append LOG strict|async sync|pipe THREADS SECONDS */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/util.h"

#define IN_FLIGHT 256

static atomic_long done_ok, done_bad;
static atomic_bool stop_flag;
static audit_log_t *lg;
static bool pipe_mode;

typedef struct slot {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
} slot_t;

static void on_done(void *arg, int status)
{
    slot_t *s = arg;
    if (status == 0)
        atomic_fetch_add(&done_ok, 1);
    else
        atomic_fetch_add(&done_bad, 1);
    pthread_mutex_lock(&s->mu);
    s->inflight--;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *run(void *arg)
{
    (void)arg;
    slot_t s = {.inflight = 0};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    char rid[UUID_STR_LEN];
    json_t *detail = json_pack("{s:s,s:s,s:s,s:s}", "model", "alzheimer_classifier", "version", "1.0.0",
                               "arm", "stable", "prediction_id", "0192f0c4-7a1e-7c3b-9a55-2f6f1b2d3e4f");
    while (!atomic_load(&stop_flag)) {
        util_uuid7(rid);
        audit_event_t ev = {.type = "MODEL_INFERENCE",
                            .user = "svc-ehr",
                            .role = "clinician",
                            .action = "E",
                            .entity_type = "model",
                            .entity_id = "alzheimer_classifier",
                            .source_ip = "10.0.0.7",
                            .outcome = "success",
                            .request_id = rid,
                            .patient_pseudonym = "p_0123456789abcdef0123456789abcd",
                            .detail = detail};
        if (!pipe_mode) {
            if (audit_log_append_sync(lg, &ev) == 0)
                atomic_fetch_add(&done_ok, 1);
            else
                atomic_fetch_add(&done_bad, 1);
            continue;
        }
        pthread_mutex_lock(&s.mu);
        while (s.inflight >= IN_FLIGHT)
            pthread_cond_wait(&s.cv, &s.mu);
        s.inflight++;
        pthread_mutex_unlock(&s.mu);
        if (audit_log_submit(lg, &ev, on_done, &s) < 0) {
            pthread_mutex_lock(&s.mu);
            s.inflight--;
            pthread_mutex_unlock(&s.mu);
        }
    }
    pthread_mutex_lock(&s.mu);
    while (s.inflight > 0)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    json_decref(detail);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: audit_append LOG strict|async sync|pipe THREADS SECONDS\n");
        return 2;
    }
    int threads = atoi(argv[4]), secs = atoi(argv[5]);
    if (threads < 1 || threads > 256 || secs < 1)
        return 2;
    pipe_mode = strcmp(argv[3], "pipe") == 0;
    config_t cfg = {0};
    cfg.audit_log_path = argv[1];
    cfg.secret_key = "bench-secret-0123456789abcdef0123456789abcdef";
    cfg.audit_durability = argv[2];
    cfg.audit_checkpoint_records = 1000;
    cfg.audit_checkpoint_interval_s = 300;
    cfg.audit_signing_key_path = getenv("AUDIT_SIGNING_KEY_PATH");
    char err[512] = "";
    if (audit_log_open(&cfg, &lg, err, sizeof(err)) < 0 || !lg) {
        fprintf(stderr, "audit_append: %s\n", err);
        return 1;
    }
    pthread_t th[256];
    int64_t t0 = util_mono_ns();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, run, NULL);
    sleep((unsigned)secs);
    atomic_store(&stop_flag, true);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double el = (double)(util_mono_ns() - t0) / 1e9;
    audit_log_close(lg);
    long ok = atomic_load(&done_ok), bad = atomic_load(&done_bad);
    printf("durability=%s mode=%s threads=%d appends=%ld failed=%ld seconds=%.2f rate=%.0f\n", argv[2],
           argv[3], threads, ok, bad, el, (double)ok / el);
    return bad ? 1 : 0;
}
