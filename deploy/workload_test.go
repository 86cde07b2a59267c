package deploy

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestChartWorkloadIdentity renders the workload identity example: the
// issuers reach the config, the JWKS ConfigMap is mounted where jwks_file
// points, and the example caller gets a projected service-account token
// with the broker's audience and no other service-account token.
func TestChartWorkloadIdentity(t *testing.T) {
	t.Parallel()
	objects := render(t, "-f", chartDir+"/ci/workload-identity-values.yaml", "--kube-version", "1.31")
	cm := objects.get(t, "ConfigMap", "tokenbroker").(*corev1.ConfigMap)
	cfg := cm.Data["tokenbroker.yaml"]
	for _, want := range []string{"jwt_issuers:", "issuer: https://kubernetes.default.svc.cluster.local", "jwks_file: /etc/tokenbroker/jwks/cluster-jwks.json", `jwt_subject: system:serviceaccount:tokens:*`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	broker := objects.get(t, "Deployment", "tokenbroker").(*appsv1.Deployment)
	mounted := false
	for _, m := range broker.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.Name == "jwks" && m.MountPath == "/etc/tokenbroker/jwks"
	}
	if !mounted {
		t.Error("the JWKS ConfigMap is not mounted at /etc/tokenbroker/jwks")
	}
	caller := objects.get(t, "Deployment", "tokenbroker-example-caller").(*appsv1.Deployment)
	spec := caller.Spec.Template.Spec
	if spec.ServiceAccountName != "invoice-worker" || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("example caller: service account %q, automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	var projected *corev1.ServiceAccountTokenProjection
	for _, v := range spec.Volumes {
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					projected = src.ServiceAccountToken
				}
			}
		}
		if v.Secret != nil {
			for _, item := range v.Secret.Items {
				if item.Key != "ca.crt" {
					t.Errorf("example caller mounts %s of Secret %s", item.Key, v.Secret.SecretName)
				}
			}
		}
	}
	if projected == nil || projected.Audience != "tokenbroker" || projected.Path != "token" || projected.ExpirationSeconds == nil || *projected.ExpirationSeconds != 3600 {
		t.Fatalf("example caller's projected token: %+v", projected)
	}
	if args := strings.Join(spec.Containers[0].Args, " "); !strings.Contains(args, "/var/run/secrets/tokenbroker/token") || !strings.Contains(args, "--cacert") {
		t.Errorf("example caller does not send the projected token over verified TLS: %s", args)
	}
}
