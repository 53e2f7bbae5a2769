{{/* Names and labels. */}}
{{- define "fairgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fairgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fairgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fairgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The gateway's pods only (Ray pods share name and instance, not the component). */}}
{{- define "fairgate.gatewaySelectorLabels" -}}
{{ include "fairgate.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "fairgate.labels" -}}
helm.sh/chart: {{ include "fairgate.chart" . }}
{{ include "fairgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fairgate
{{- end }}

{{- define "fairgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fairgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fairgate.secretName" -}}
{{- default (include "fairgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "fairgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "fairgate.rayImage" -}}
{{- printf "%s:%s" .Values.ray.image.repository (default .Chart.AppVersion .Values.ray.image.tag) }}
{{- end }}

{{/* Several gateway pods: more than one replica, or an HPA. */}}
{{- define "fairgate.multiGateway" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{/* The data volume is a PVC only for the SQLite ledger (one writer). */}}
{{- define "fairgate.dataClaim" -}}
{{- if and (eq .Values.ledger.backend "sqlite") .Values.persistence.enabled }}
{{- default (printf "%s-data" (include "fairgate.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express, refused with the value to set. */}}
{{- define "fairgate.validate" -}}
{{- $secret := .Values.secrets.existingSecret }}
{{- if and (eq .Values.ledger.backend "sqlite") (include "fairgate.multiGateway" .) }}
{{- fail "ledger.backend=sqlite allows one gateway pod (replicaCount 1, autoscaling off): set ledger.backend=postgresql for several" }}
{{- end }}
{{- if eq .Values.ledger.backend "postgresql" }}
{{- if and (not $secret) (not .Values.secrets.ledgerUrl) }}
{{- fail "ledger.backend=postgresql needs secrets.ledgerUrl (postgresql://user:password@host:5432/db), or secrets.existingSecret with a ledger-url key" }}
{{- end }}
{{- if and (not $secret) (not .Values.secrets.signingKey) }}
{{- fail "ledger.backend=postgresql needs secrets.signingKey (an Ed25519 PKCS#8 PEM: openssl genpkey -algorithm ed25519), or secrets.existingSecret with a signing-key.pem key: the gateway pods' data is not persistent" }}
{{- end }}
{{- else if .Values.secrets.ledgerUrl }}
{{- fail "secrets.ledgerUrl is set but ledger.backend is sqlite: set ledger.backend=postgresql" }}
{{- end }}
{{- if and (include "fairgate.multiGateway" .) .Values.ray.enabled (not .Values.ray.keepReplicas) }}
{{- fail "ray.keepReplicas=false with several gateway pods: a stopping pod would stop the engines the others use" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs ingress.hosts (at least one {host, paths})" }}
{{- end }}
{{- if not .Values.ray.enabled }}
{{- $ray := default dict .Values.config.ray }}
{{- range $model := (default list .Values.config.models) }}
{{- if and (eq (default "vllm" $model.provider) "vllm") (not $ray.address) }}
{{- fail (printf "config.models[%s] has provider vllm but ray.enabled is false: set config.ray.address (ray://<head>:10001) or ray.enabled=true" $model.name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fairgate.rayClusterName" -}}
{{- printf "%s-ray" (include "fairgate.fullname" .) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/*
The gateway's configuration file, without secrets (merged in by the init container).
*/}}
{{- define "fairgate.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if hasKey $config "admin_key" }}
{{- fail "config.admin_key: put the admin key in secrets.adminKey (or an existing Secret)" }}
{{- end }}
{{- if hasKey $config "audit_key" }}
{{- fail "config.audit_key: put the audit key in secrets.auditKey (or an existing Secret)" }}
{{- end }}
{{- range $tenant := (default list $config.tenants) }}
{{- if hasKey $tenant "api_keys" }}
{{- fail (printf "config.tenants[%s].api_keys: put API keys in secrets.tenantKeys" $tenant.name) }}
{{- end }}
{{- end }}
{{- $_ := set $config "data_dir" "/var/lib/fairgate" }}
{{- $_ := set $config "listen" (dict "host" "0.0.0.0" "port" 8000) }}
{{- if hasKey (default dict $config.ledger) "url" }}
{{- fail "config.ledger.url: put the PostgreSQL URL in secrets.ledgerUrl and set ledger.backend=postgresql" }}
{{- end }}
{{- if .Values.ray.enabled }}
{{- $ray := default dict $config.ray }}
{{- if not $ray.address }}
{{- $_ := set $ray "address" (printf "ray://%s-head-svc:%d" (include "fairgate.rayClusterName" .) (int .Values.ray.clientPort)) }}
{{- end }}
{{- $_ := set $ray "keep_replicas" .Values.ray.keepReplicas }}
{{- $_ := set $config "ray" $ray }}
{{- end }}
{{- toYaml $config }}
{{- end }}

