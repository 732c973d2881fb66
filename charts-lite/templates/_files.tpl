{{/*
The files the chart itself needs in DMS's config folder (path -> text): with haproxy the PROXY
listeners, without it placeholders, so turning haproxy off also removes the listeners.
*/}}
{{- define "mailserver.chartFiles" -}}
{{- if .Values.haproxy.enabled }}
{{- $proxy := dict }}
{{- range (include "mailserver.ports" . | fromYamlArray) }}
{{- $_ := set $proxy .name .proxy }}
{{- end }}
user-patches.sh: |
  #!/bin/bash
  # PROXY-protocol twins of the public Postfix services (12525, 10587, 10465), for an external
  # HAProxy; clients inside the cluster keep the plain ports. Each twin is cloned from DMS's
  # own master.cf entry, so it keeps DMS's options.
  set -euo pipefail
  twin() {
    local service="$1" port="$2" param="$3" entry
    entry="$(postconf -M "${service}/inet" | tr '\n' ' ')"
    if [ -z "${entry}" ]; then
      echo "user-patches: no ${service}/inet in master.cf, no PROXY twin on ${port}" >&2
      return 0
    fi
    postconf -Me "${port}/inet=${port} ${entry#* }"
    postconf -P "${port}/inet/${param}=haproxy" "${port}/inet/syslog_name=postfix/${service}-proxy"
  }
  twin smtp {{ $proxy.smtp }} postscreen_upstream_proxy_protocol
  postconf -P '{{ $proxy.smtp }}/inet/postscreen_cache_map=btree:$data_directory/postscreen_{{ $proxy.smtp }}_cache'
  twin submission {{ $proxy.submission }} smtpd_upstream_proxy_protocol
  if postconf -M submissions/inet | grep -q .; then
    twin submissions {{ $proxy.smtps }} smtpd_upstream_proxy_protocol
  else
    twin smtps {{ $proxy.smtps }} smtpd_upstream_proxy_protocol
  fi
dovecot.cf: |
  # PROXY-protocol listeners (port + 10000) for an external HAProxy.
  haproxy_trusted_networks = {{ .Values.haproxy.trusted_networks }}
  service imap-login {
    inet_listener imap_proxy {
      port = {{ $proxy.imap }}
      haproxy = yes
    }
    inet_listener imaps_proxy {
      port = {{ $proxy.imaps }}
      ssl = yes
      haproxy = yes
    }
  }
  {{- if hasKey $proxy "pop3" }}
  service pop3-login {
    inet_listener pop3_proxy {
      port = {{ $proxy.pop3 }}
      haproxy = yes
    }
    inet_listener pop3s_proxy {
      port = {{ $proxy.pop3s }}
      ssl = yes
      haproxy = yes
    }
  }
  {{- end }}
{{- else }}
user-patches.sh: |
  #!/bin/bash
  # Placeholder owned by the <name>-files ConfigMap (haproxy disabled).
dovecot.cf: |
  # Placeholder owned by the <name>-files ConfigMap (haproxy disabled).
{{- end }}
{{- end -}}

{{/*
Every file for DMS's config folder (path -> text): the chart's own with the operator's
`dmsConfig` file of the same path appended (never replaced by the chart's), then the
operator's other files as they are.
*/}}
{{- define "mailserver.configFiles" -}}
{{- $files := include "mailserver.chartFiles" . | fromYaml -}}
{{- range $path, $text := .Values.dmsConfig -}}
{{- if hasKey $files $path -}}
{{- $_ := set $files $path (printf "%s\n# --- from the chart's values (dmsConfig) ---\n%s" (get $files $path | trimSuffix "\n") $text) -}}
{{- else -}}
{{- $_ := set $files $path $text -}}
{{- end -}}
{{- end -}}
{{- range $path, $text := $files -}}
{{- $_ := set $files $path (printf "%s\n" (trimSuffix "\n" $text)) -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/* A ConfigMap key for a path in the config folder: "/" is not allowed in keys. */}}
{{- define "mailserver.configFileKey" -}}
{{- replace "/" "." . -}}
{{- end -}}

{{/* The files volume's items: only needed when a path has folders (rspamd/override.d/...). */}}
{{- define "mailserver.configFileItems" -}}
{{- $files := include "mailserver.configFiles" . | fromJson -}}
{{- $nested := false -}}
{{- range $path, $_ := $files -}}
{{- if contains "/" $path }}{{ $nested = true }}{{ end -}}
{{- end -}}
{{- if $nested -}}
{{- range $path, $_ := $files }}
- key: {{ include "mailserver.configFileKey" $path }}
  path: {{ $path }}
{{- end }}
{{- end -}}
{{- end -}}
