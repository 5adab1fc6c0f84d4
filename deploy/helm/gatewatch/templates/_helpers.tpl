{{- define "gatewatch.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatewatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gatewatch.labels" -}}
app.kubernetes.io/name: {{ include "gatewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gatewatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gatewatch.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The port of each "host:port" in a comma-separated broker list, de-duplicated, as a YAML list. */}}
{{- define "gatewatch.brokerPorts" -}}
{{- $ports := list -}}
{{- range splitList "," .Values.kafka.brokers -}}
{{- $parts := splitList ":" (trim .) -}}
{{- $ports = append $ports (last $parts | int) -}}
{{- end -}}
{{- toYaml (uniq $ports) -}}
{{- end -}}

{{/* The port of a URL (its explicit port, else 443 for https and 80 for http). */}}
{{- define "gatewatch.urlPort" -}}
{{- $hostport := regexReplaceAll "^[a-z]+://([^/]*).*$" . "${1}" -}}
{{- if regexMatch ":[0-9]+$" $hostport -}}
{{ regexFind "[0-9]+$" $hostport }}
{{- else if hasPrefix "https://" . -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{- define "gatewatch.saslSecret" -}}
{{- .Values.kafka.sasl.existingSecret | default (printf "%s-kafka-sasl" (include "gatewatch.fullname" .)) -}}
{{- end -}}

{{- define "gatewatch.nitroSecret" -}}
{{- .Values.nitro.existingSecret | default (printf "%s-nitro" (include "gatewatch.fullname" .)) -}}
{{- end -}}

{{/* TOML string list */}}
{{- define "gatewatch.tomlList" -}}
[{{- range $i, $v := . -}}{{- if $i }}, {{ end -}}{{ $v | quote }}{{- end -}}]
{{- end -}}

{{/* The gatewatch configuration file the pods read (layered over the image's config/default.toml). */}}
{{- define "gatewatch.config" -}}
[kafka]
brokers = {{ .Values.kafka.brokers | quote }}
group_id = {{ .Values.kafka.groupId | quote }}
input_topics = {{ include "gatewatch.tomlList" .Values.kafka.inputTopics }}
session_timeout = {{ .Values.kafka.sessionTimeout | quote }}
delivery_timeout = {{ .Values.kafka.deliveryTimeout | quote }}
delivery = {{ .Values.kafka.delivery | quote }}
security_protocol = {{ .Values.kafka.securityProtocol | quote }}
{{- if .Values.kafka.sasl.mechanism }}
sasl_mechanism = {{ .Values.kafka.sasl.mechanism | quote }}
sasl_username = {{ .Values.kafka.sasl.username | quote }}
sasl_password_file = "/etc/gatewatch/kafka-sasl/password"
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
ssl_ca_file = "/etc/gatewatch/kafka-tls/ca.crt"
{{- if .Values.kafka.tls.mutual }}
ssl_certificate_file = "/etc/gatewatch/kafka-tls/tls.crt"
ssl_key_file = "/etc/gatewatch/kafka-tls/tls.key"
{{- end }}
{{- end }}
[kafka.consumer_options]
{{- range $k, $v := .Values.kafka.consumerOptions }}
{{ $k | quote }} = {{ $v | toString | quote }}
{{- end }}
[kafka.producer_options]
{{- range $k, $v := .Values.kafka.producerOptions }}
{{ $k | quote }} = {{ $v | toString | quote }}
{{- end }}

[output]
enriched_topic = {{ .Values.kafka.enrichedTopic | quote }}
alerts_topic = {{ .Values.kafka.alertsTopic | quote }}
dlq_topic = {{ .Values.kafka.dlqTopic | quote }}

[pipeline]
shutdown_timeout = {{ .Values.shutdownTimeout | quote }}

[parse]
date_order = {{ .Values.parse.dateOrder | quote }}
timezone = {{ .Values.parse.timezone | quote }}
[parse.topic_datasets]
{{- range $topic, $dataset := .Values.parse.topicDatasets }}
{{ $topic | quote }} = {{ $dataset | quote }}
{{- end }}

[admin]
listen = "0.0.0.0:{{ .Values.admin.port }}"

[log]
level = {{ .Values.log.level | quote }}
format = {{ .Values.log.format | quote }}

[telemetry]
otlp_endpoint = {{ .Values.telemetry.otlpEndpoint | quote }}
otlp_protocol = {{ .Values.telemetry.otlpProtocol | quote }}
export_interval = {{ .Values.telemetry.exportInterval | quote }}
service_name = {{ include "gatewatch.fullname" . | quote }}
[telemetry.resource_attributes]
"k8s.namespace.name" = {{ .Release.Namespace | quote }}
{{- range $k, $v := .Values.telemetry.resourceAttributes }}
{{ $k | quote }} = {{ $v | quote }}
{{- end }}

[enrich]
reload_interval = {{ .Values.reloadInterval | quote }}
[enrich.geoip]
{{- if ne .Values.geoip.source "none" }}
city_db = "/var/lib/gatewatch/geoip/GeoLite2-City.mmdb"
asn_db = "/var/lib/gatewatch/geoip/GeoLite2-ASN.mmdb"
{{- end }}
roles = {{ include "gatewatch.tomlList" .Values.geoip.roles }}
{{- range .Values.feeds.items }}
[[enrich.ioc.feeds]]
name = {{ .name | quote }}
path = {{ printf "/feeds/%s" .file | quote }}
format = {{ .format | quote }}
{{- end }}

[detect]
rules_dirs = ["/etc/gatewatch/rules"{{ if .Values.detect.customRules }}, "/etc/gatewatch/custom-rules"{{ end }}]
default_suppress = {{ .Values.detect.defaultSuppress | quote }}
state_topic = {{ .Values.detect.stateTopic | quote }}
snapshot_interval = {{ .Values.detect.snapshotInterval | quote }}
[detect.placeholders]
management_networks = {{ include "gatewatch.tomlList" .Values.detect.managementNetworks }}
blocked_countries = {{ include "gatewatch.tomlList" .Values.detect.blockedCountries }}

[baseline]
metrics_topic = {{ .Values.baseline.metricsTopic | quote }}
state_topic = {{ .Values.baseline.stateTopic | quote }}
alert_threshold = {{ .Values.baseline.alertThreshold }}
min_deviation = {{ .Values.baseline.minDeviation }}
direction = {{ .Values.baseline.direction | quote }}
warmup = {{ .Values.baseline.warmup }}
warmup_span = {{ .Values.baseline.warmupSpan | quote }}
clear_after = {{ .Values.baseline.clearAfter | quote }}
[baseline.nitro]
interval = {{ .Values.nitro.interval | quote }}
tls_verify = {{ .Values.nitro.tlsVerify }}
{{- if or .Values.nitro.username .Values.nitro.existingSecret }}
password_file = "/etc/gatewatch/nitro/password"
{{- end }}
{{- if .Values.nitro.caSecret }}
ca_file = "/etc/gatewatch/nitro-ca/ca.crt"
{{- end }}
[baseline.nitro.appliances]
{{- range $name, $url := .Values.nitro.appliances }}
{{ $name | quote }} = {{ $url | quote }}
{{- end }}

{{- range $host, $d := .Values.devices }}
[devices.{{ $host | quote }}]
{{- range $k, $v := $d }}
{{ $k }} = {{ $v | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The geoipupdate init container, when GeoIP comes from MaxMind at start-up. */}}
{{- define "gatewatch.initContainers" -}}
- name: geoipupdate
  image: {{ .Values.geoip.geoipupdate.image }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  env:
    - name: GEOIPUPDATE_ACCOUNT_ID
      value: {{ required "geoip.geoipupdate.accountId is required" .Values.geoip.geoipupdate.accountId | quote }}
    - name: GEOIPUPDATE_LICENSE_KEY
      valueFrom:
        secretKeyRef:
          name: {{ required "geoip.geoipupdate.licenseKeySecret is required" .Values.geoip.geoipupdate.licenseKeySecret }}
          key: GEOIPUPDATE_LICENSE_KEY
    - name: GEOIPUPDATE_EDITION_IDS
      value: {{ .Values.geoip.geoipupdate.editionIds | quote }}
    - name: GEOIPUPDATE_DB_DIR
      value: /var/lib/gatewatch/geoip
  volumeMounts:
    - name: geoip
      mountPath: /var/lib/gatewatch/geoip
{{- end -}}

{{/* Mounts of the gatewatch container (deployment and replay job). */}}
{{- define "gatewatch.volumeMounts" -}}
- name: config
  mountPath: /etc/gatewatch/gatewatch.toml
  subPath: gatewatch.toml
  readOnly: true
- name: rules
  mountPath: /etc/gatewatch/rules
  readOnly: true
{{- if .Values.detect.customRules }}
- name: custom-rules
  mountPath: /etc/gatewatch/custom-rules
  readOnly: true
{{- end }}
{{- if ne .Values.geoip.source "none" }}
- name: geoip
  mountPath: /var/lib/gatewatch/geoip
  readOnly: true
{{- end }}
{{- if or .Values.feeds.configMap .Values.feeds.secret }}
- name: feeds
  mountPath: /feeds
  readOnly: true
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- name: kafka-sasl
  mountPath: /etc/gatewatch/kafka-sasl
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/gatewatch/kafka-tls
  readOnly: true
{{- end }}
{{- if or .Values.nitro.username .Values.nitro.existingSecret }}
- name: nitro
  mountPath: /etc/gatewatch/nitro
  readOnly: true
{{- end }}
{{- if .Values.nitro.caSecret }}
- name: nitro-ca
  mountPath: /etc/gatewatch/nitro-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes behind gatewatch.volumeMounts. */}}
{{- define "gatewatch.volumes" -}}
- name: config
  configMap:
    name: {{ include "gatewatch.fullname" . }}-config
- name: rules
  configMap:
    name: {{ include "gatewatch.fullname" . }}-rules
{{- if .Values.detect.customRules }}
- name: custom-rules
  configMap:
    name: {{ include "gatewatch.fullname" . }}-custom-rules
{{- end }}
{{- if eq .Values.geoip.source "pvc" }}
- name: geoip
  persistentVolumeClaim:
    claimName: {{ required "geoip.existingClaim is required with geoip.source=pvc" .Values.geoip.existingClaim }}
    readOnly: true
{{- else if eq .Values.geoip.source "geoipupdate" }}
- name: geoip
  emptyDir: {}
{{- end }}
{{- if .Values.feeds.configMap }}
- name: feeds
  configMap:
    name: {{ .Values.feeds.configMap }}
{{- else if .Values.feeds.secret }}
- name: feeds
  secret:
    secretName: {{ .Values.feeds.secret }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- name: kafka-sasl
  secret:
    secretName: {{ include "gatewatch.saslSecret" . }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- if or .Values.nitro.username .Values.nitro.existingSecret }}
- name: nitro
  secret:
    secretName: {{ include "gatewatch.nitroSecret" . }}
    items: [{key: password, path: password}]
{{- end }}
{{- if .Values.nitro.caSecret }}
- name: nitro-ca
  secret:
    secretName: {{ .Values.nitro.caSecret }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- end -}}
