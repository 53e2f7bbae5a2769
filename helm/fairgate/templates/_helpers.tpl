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
{{- default (include "fairgate.image" .) .Values.ray.cluster.image }}
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
{{- if .Values.ray.cluster.enabled }}
{{- $ray := default dict $config.ray }}
{{- if not $ray.address }}
{{- $_ := set $ray "address" (printf "ray://%s-head-svc:%d" (include "fairgate.rayClusterName" .) (int .Values.ray.cluster.clientPort)) }}
{{- end }}
{{- $_ := set $config "ray" $ray }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
A RayCluster spec (also a RayService's rayClusterConfig): a head without engines and GPU
worker groups, all on the Ray + vLLM image.
*/}}
{{- define "fairgate.rayClusterSpec" -}}
{{- $cluster := .Values.ray.cluster -}}
rayVersion: {{ $cluster.rayVersion | quote }}
enableInTreeAutoscaling: {{ $cluster.enableInTreeAutoscaling }}
headGroupSpec:
  rayStartParams: {{- if not $cluster.head.rayStartParams }} {}{{- end }}
    {{- range $key, $value := $cluster.head.rayStartParams }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
  template:
    metadata:
      labels:
        {{- include "fairgate.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/component: ray-head
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cluster.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cluster.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "fairgate.rayImage" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - {name: gcs, containerPort: 6379}
            - {name: dashboard, containerPort: 8265}
            - {name: client, containerPort: {{ int $cluster.clientPort }}}
            - {name: serve, containerPort: 8000}
            - {name: metrics, containerPort: 8080}
          resources:
            {{- toYaml $cluster.head.resources | nindent 12 }}
workerGroupSpecs:
  {{- range $group := $cluster.workerGroups }}
  - groupName: {{ $group.name }}
    replicas: {{ int $group.replicas }}
    minReplicas: {{ int $group.minReplicas }}
    maxReplicas: {{ int $group.maxReplicas }}
    rayStartParams: {{- if not $group.rayStartParams }} {}{{- end }}
      {{- range $key, $value := $group.rayStartParams }}
      {{ $key }}: {{ $value | quote }}
      {{- end }}
    template:
      metadata:
        labels:
          {{- include "fairgate.selectorLabels" $ | nindent 10 }}
          app.kubernetes.io/component: ray-worker
      spec:
        {{- with $.Values.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $group.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $group.tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "fairgate.rayImage" $ }}
            imagePullPolicy: {{ $.Values.image.pullPolicy }}
            env:
              - {name: VLLM_NO_USAGE_STATS, value: "1"}
            resources:
              {{- toYaml $group.resources | nindent 14 }}
  {{- end }}
{{- end }}
