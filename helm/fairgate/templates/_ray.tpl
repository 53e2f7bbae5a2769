{{/*
A RayCluster spec (also a RayService's rayClusterConfig): a head that runs no engine and GPU
worker groups on the fairgate Ray image, non-root, with /dev/shm and a model cache.
*/}}
{{- define "fairgate.rayPodSecurity" -}}
securityContext:
  {{- toYaml .Values.ray.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "fairgate.rayClusterSpec" -}}
{{- $ray := .Values.ray -}}
rayVersion: {{ $ray.rayVersion | quote }}
enableInTreeAutoscaling: {{ $ray.enableInTreeAutoscaling }}
headGroupSpec:
  rayStartParams:
    {{- range $key, $value := $ray.head.rayStartParams }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
    {{- if not $ray.head.rayStartParams }} {}{{- end }}
  template:
    metadata:
      labels:
        {{- include "fairgate.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/component: ray-head
    spec:
      {{- include "fairgate.rayPodSecurity" . | nindent 6 }}
      {{- with $ray.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $ray.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "fairgate.rayImage" . }}
          imagePullPolicy: {{ $ray.image.pullPolicy }}
          ports:
            - {name: gcs, containerPort: 6379}
            - {name: dashboard, containerPort: 8265}
            - {name: client, containerPort: {{ int $ray.clientPort }}}
            - {name: serve, containerPort: 8000}
            - {name: metrics, containerPort: 8080}
          securityContext:
            {{- toYaml $ray.securityContext | nindent 12 }}
          resources:
            {{- toYaml $ray.head.resources | nindent 12 }}
          volumeMounts:
            - {name: shm, mountPath: /dev/shm}
      volumes:
        - name: shm
          emptyDir: {medium: Memory, sizeLimit: {{ $ray.shmSize | quote }}}
workerGroupSpecs:
  {{- range $group := $ray.workerGroups }}
  - groupName: {{ $group.name }}
    replicas: {{ int $group.replicas }}
    minReplicas: {{ int $group.minReplicas }}
    maxReplicas: {{ int $group.maxReplicas }}
    rayStartParams:
      {{- range $key, $value := $group.rayStartParams }}
      {{ $key }}: {{ $value | quote }}
      {{- end }}
      {{- if not $group.rayStartParams }} {}{{- end }}
    template:
      metadata:
        labels:
          {{- include "fairgate.selectorLabels" $ | nindent 10 }}
          app.kubernetes.io/component: ray-worker
      spec:
        {{- include "fairgate.rayPodSecurity" $ | nindent 8 }}
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
            imagePullPolicy: {{ $ray.image.pullPolicy }}
            env:
              - {name: HF_HOME, value: {{ $ray.modelCache.mountPath | quote }}}
              - {name: VLLM_NO_USAGE_STATS, value: "1"}
              - {name: DO_NOT_TRACK, value: "1"}
            securityContext:
              {{- toYaml $ray.securityContext | nindent 14 }}
            resources:
              {{- toYaml $group.resources | nindent 14 }}
            volumeMounts:
              - {name: shm, mountPath: /dev/shm}
              - {name: model-cache, mountPath: {{ $ray.modelCache.mountPath | quote }}}
        volumes:
          - name: shm
            emptyDir: {medium: Memory, sizeLimit: {{ $ray.shmSize | quote }}}
          - name: model-cache
            {{- if $ray.modelCache.existingClaim }}
            persistentVolumeClaim:
              claimName: {{ $ray.modelCache.existingClaim }}
            {{- else }}
            emptyDir: {sizeLimit: {{ $ray.modelCache.sizeLimit | quote }}}
            {{- end }}
  {{- end }}
{{- end }}
