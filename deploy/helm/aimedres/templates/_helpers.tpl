{{/*
SPDX-License-Identifier: Apache-2.0
Names, labels, the checks that refuse an unsafe or unsupported release (replicaCount,
existingSecret, settings the chart owns, secrets and credential-bearing URLs in values, TLS_ENABLED,
LOG_FILE, the Ingress without host or TRUSTED_PROXIES, a name that is not a DNS-1035 label), and
the pieces the server StatefulSet and the backup CronJobs share: the environment, the secret
files, the security contexts.
*/}}

{{- define "aimedres.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aimedres.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "aimedres.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "aimedres.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aimedres.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aimedres.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aimedres.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "aimedres.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The server pod: what the Service, NetworkPolicy and the backups' podAffinity select. */}}
{{- define "aimedres.serverSelectorLabels" -}}
{{ include "aimedres.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/*
Prefix of the backup CronJobs' names: "<fullname>-backup", the fullname cut so that the longest
"-backup-<job>" ("-backup-incremental", 19 characters) still fits in 52 (a CronJob's name limit:
its Jobs append 11 characters). Every job keeps its own suffix, so names never collide.
*/}}
{{- define "aimedres.backupPrefix" -}}
{{- printf "%s-backup" (include "aimedres.fullname" . | trunc 33 | trimSuffix "-") -}}
{{- end -}}

{{/*
A config value as the binary reads it. A number from a values FILE is a float64 and toString
would render 10000000000 as "1e+10" (refused by the binary): whole numbers are printed as
integers; everything else (strings, non-whole numbers such as 0.05, booleans) as toString.
*/}}
{{- define "aimedres.configString" -}}
{{- /* nested, not `and`: helm's Go templates evaluate both operands of `and` */ -}}
{{- $s := toString . -}}
{{- if kindIs "float64" . -}}
{{- if eq . (floor .) -}}
{{- $s = printf "%.0f" . -}}
{{- end -}}
{{- end -}}
{{- $s -}}
{{- end -}}

{{- define "aimedres.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aimedres.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aimedres.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "aimedres.dataClaim" -}}
{{- default (printf "%s-data" (include "aimedres.fullname" .)) .Values.persistence.data.existingClaim -}}
{{- end -}}

{{- define "aimedres.backupsClaim" -}}
{{- default (printf "%s-backups" (include "aimedres.fullname" .)) .Values.persistence.backups.existingClaim -}}
{{- end -}}

{{/* Fixed paths inside the container (the image's directories, on the volumes below). */}}
{{- define "aimedres.dataDir" -}}/var/lib/aimedres{{- end -}}
{{- define "aimedres.backupDir" -}}/var/backup/aimedres{{- end -}}
{{- define "aimedres.secretDir" -}}/etc/aimedres/secret{{- end -}}
{{- define "aimedres.keyDir" -}}/run/aimedres-keys{{- end -}}

{{/*
Refuse what cannot work. Included by every template that renders a workload, so that
`helm template`, `lint` and `install` all fail with the reason.
*/}}
{{- define "aimedres.validate" -}}
{{- if ne (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount must be 1 (got %v): the store is SQLite with a single-writer lock on its volume, so a second replica would be a second writer; more replicas need the PostgreSQL backend, which is not available yet" .Values.replicaCount) -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- fail "existingSecret is required: name an existing Secret holding SECRET_KEY, JWT_SECRET_KEY, API_KEY_SALT, audit-signing.pem (and backup.key for the backup jobs); this chart never renders secrets from values (see values.yaml)" -}}
{{- end -}}
{{- $owned := list "PORT" "PROMETHEUS_PORT" "HOST" "DATABASE_URL" "MODEL_STORAGE_PATH" "DATA_DIR" "RESULTS_PATH" "AUDIT_LOG_PATH" "AUDIT_SIGNING_KEY_PATH" "BACKUP_PATH" "BACKUP_ENABLED" "BACKUP_ENCRYPTION_KEY_FILE" -}}
{{- $secret := list "SECRET_KEY" "JWT_SECRET_KEY" "API_KEY_SALT" -}}
{{- /* URLs the binary redacts (SECRET_URL, SECRET_URL_TAIL in src/common/config.c): a password
or a token in the path may be part of them, so they come from existingSecret (optional keys) */ -}}
{{- $secretUrls := dict "ALERTMANAGER_URL" "alertmanagerUrl" "ALERT_WEBHOOK_URL" "alertWebhookUrl" -}}
{{- range $k, $v := .Values.config -}}
{{- if has $k $owned -}}
{{- fail (printf "config.%s: set by the chart (from its volumes and ports); remove it from values" $k) -}}
{{- end -}}
{{- if has $k $secret -}}
{{- fail (printf "config.%s is a secret: put it in existingSecret, never in values" $k) -}}
{{- end -}}
{{- if and (hasKey $secretUrls $k) (ne (toString $v) "") -}}
{{- fail (printf "config.%s may carry a credential (a password or a token in its path): put it in existingSecret under the key secretKeys.%s (default %s), never in values" $k (get $secretUrls $k) $k) -}}
{{- end -}}
{{- end -}}
{{- if has (lower (include "aimedres.configString" (default "" .Values.config.TLS_ENABLED))) (list "true" "1" "yes" "on") -}}
{{- fail "config.TLS_ENABLED=true is not supported by this chart: its probes and ServiceMonitor speak plain HTTP and it mounts no certificate; terminate TLS at the Ingress (ingress.tlsSecretName) and leave TLS_ENABLED unset" -}}
{{- end -}}
{{- if ne (toString (default "" .Values.config.LOG_FILE)) "" -}}
{{- fail "config.LOG_FILE is not supported by this chart: the root file system is read-only and the pod's log is its stderr (kubectl logs, your log shipper); remove LOG_FILE" -}}
{{- end -}}
{{- $fullname := include "aimedres.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- fail (printf "the name %q (release name, nameOverride or fullnameOverride) is not a DNS-1035 label: Kubernetes names the Service after it, so it must be lower-case letters, digits and '-', start with a letter and end with a letter or digit (at most 63)" $fullname) -}}
{{- end -}}
{{- if gt (len $fullname) 52 -}}
{{- fail (printf "the name %q (release name, nameOverride or fullnameOverride) is %d characters: at most 52, because the StatefulSet's pods carry a controller-revision-hash label of the name plus 11 characters, which Kubernetes limits to 63 (a longer name renders, but its pod is never created)" $fullname (len $fullname)) -}}
{{- end -}}
{{- if .Values.ingress.enabled -}}
{{- if not .Values.ingress.host -}}
{{- fail "ingress.host is empty with ingress.enabled=true: set the host name clients use (e.g. aimedres.hospital.example.org); the Ingress rule and its TLS certificate are for that host" -}}
{{- end -}}
{{- if eq (toString (default "" .Values.config.TRUSTED_PROXIES)) "" -}}
{{- fail "config.TRUSTED_PROXIES is empty with ingress.enabled=true: every request would come from the ingress controller's address, so one client's bad API keys would lock out every client and the audit trail's source_ip would be the controller's. Set config.TRUSTED_PROXIES to the pod CIDR of the ingress controller's pods (the cluster's pod network, e.g. 10.244.0.0/16)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not (regexMatch "^[0-9]+[kKmMgG]?$" (include "aimedres.configString" .Values.config.MAX_BODY_BYTES))) -}}
{{- fail (printf "config.MAX_BODY_BYTES=%v: with the Ingress enabled it must be a number with an optional k/m/g suffix, the form ingress-nginx's proxy-body-size also understands" .Values.config.MAX_BODY_BYTES) -}}
{{- end -}}
{{- if eq (int .Values.service.port) (int .Values.metrics.port) -}}
{{- fail "metrics.port must differ from service.port (PROMETHEUS_PORT != PORT)" -}}
{{- end -}}
{{- end -}}

{{/* Settings the chart owns, from its volumes and ports: the ConfigMap's fixed part. */}}
{{- define "aimedres.ownedConfig" -}}
PORT: {{ .Values.service.port | quote }}
PROMETHEUS_PORT: {{ .Values.metrics.port | quote }}
DATABASE_URL: {{ printf "sqlite://%s/aimedres.db" (include "aimedres.dataDir" .) | quote }}
MODEL_STORAGE_PATH: {{ printf "%s/models" (include "aimedres.dataDir" .) | quote }}
DATA_DIR: {{ printf "%s/data" (include "aimedres.dataDir" .) | quote }}
AUDIT_LOG_PATH: {{ printf "%s/audit/audit.log" (include "aimedres.dataDir" .) | quote }}
AUDIT_SIGNING_KEY_PATH: {{ printf "%s/%s" (include "aimedres.secretDir" .) .Values.secretKeys.auditSigningKey | quote }}
BACKUP_PATH: {{ include "aimedres.backupDir" . | quote }}
BACKUP_ENABLED: {{ .Values.backups.enabled | toString | quote }}
{{- end -}}

{{/* Environment of the server and the backup jobs: the ConfigMap, then the three secrets and
the two optional credential-bearing URLs from existingSecret. */}}
{{- define "aimedres.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "aimedres.fullname" . }}
env:
  - name: SECRET_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .Values.existingSecret }}
        key: {{ .Values.secretKeys.secretKey }}
  - name: JWT_SECRET_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .Values.existingSecret }}
        key: {{ .Values.secretKeys.jwtSecretKey }}
  - name: API_KEY_SALT
    valueFrom:
      secretKeyRef:
        name: {{ .Values.existingSecret }}
        key: {{ .Values.secretKeys.apiKeySalt }}
  # optional: unset (monitor alerts not sent there) when the Secret has no such key
  - name: ALERTMANAGER_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.existingSecret }}
        key: {{ .Values.secretKeys.alertmanagerUrl }}
        optional: true
  - name: ALERT_WEBHOOK_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.existingSecret }}
        key: {{ .Values.secretKeys.alertWebhookUrl }}
        optional: true
{{- end -}}

{{- define "aimedres.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aimedres.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
