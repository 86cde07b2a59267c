package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// TestChartAlertsForTwoInstalls renders the chart's PrometheusRule for two
// installs in one cluster (release one in namespace a with a ServiceMonitor,
// release two in namespace b scraped by pod annotations, with its own
// selector and runbook base), and runs promtool's unit tests on the two
// rule files together: each install's Down and Absent fire for it alone,
// and its alerts name its namespace.
func TestChartAlertsForTwoInstalls(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not on PATH: WITH_PROMTOOL=1 ./scripts/deps.sh (make deploy-check needs it)")
	}
	dir := t.TempDir()
	installs := []struct {
		release, namespace string
		args               []string
	}{
		{"one", "a", []string{"--set", "metrics.serviceMonitor.enabled=true"}},
		{"two", "b", []string{
			"--set", `metrics.prometheusRule.selector=job="kubernetes-pods"\, namespace="b"\, app_kubernetes_io_instance="two"`,
			"--set", "metrics.prometheusRule.runbookBaseURL=https://runbooks.example.com/tokenbroker/",
		}},
	}
	var ruleFiles []string
	for _, in := range installs {
		args := append([]string{"template", in.release, chartDir, "--namespace", in.namespace, "--show-only", "templates/prometheusrule.yaml",
			"--set", "metrics.prometheusRule.enabled=true"}, minimalValues...)
		out, err := run(t, nil, "helm", append(args, in.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var rule monitoringv1.PrometheusRule
		if err := decodeStrict([]byte(out), &rule); err != nil {
			t.Fatalf("install %s: %v\n%s", in.release, err, out)
		}
		groups, err := json.Marshal(map[string]any{"groups": rule.Spec.Groups})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, in.release+".rules.yaml")
		writeFile(t, file, groups)
		ruleFiles = append(ruleFiles, filepath.Base(file))
	}

	// Install one: a ServiceMonitor scrape of Service one-tokenbroker. Its
	// first replica stops answering; then every target of install two
	// disappears while install one keeps its second replica.
	oneUp := func(instance, values string) map[string]string {
		return map[string]string{"series": `up{job="tokenbroker", namespace="a", service="one-tokenbroker", instance="` + instance + `"}`, "values": values}
	}
	twoUp := map[string]string{"series": `up{job="kubernetes-pods", namespace="b", app_kubernetes_io_instance="two", instance="10.0.2.1:8080"}`, "values": "1x5 _x30"}
	// Another team's scrape of something else in namespace a.
	other := map[string]string{"series": `up{job="tokenbroker", namespace="a", service="someone-else", instance="10.0.9.9:8080"}`, "values": "0x35"}
	tests := map[string]any{
		"rule_files":          ruleFiles,
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"interval":     "1m",
			"input_series": []any{oneUp("10.0.1.1:8080", "1 1 0x33"), oneUp("10.0.1.2:8080", "1x35"), twoUp, other},
			"alert_rule_test": []any{
				map[string]any{"eval_time": "8m", "alertname": "TokenbrokerDown", "exp_alerts": []any{map[string]any{
					"exp_labels": map[string]string{"severity": "critical", "job": "tokenbroker", "namespace": "a", "service": "one-tokenbroker", "instance": "10.0.1.1:8080"},
					"exp_annotations": map[string]string{
						"summary":     "tokenbroker 10.0.1.1:8080 is down",
						"description": "Prometheus has not scraped 10.0.1.1:8080 for 5 minutes: the process is gone, not listening, or unreachable.",
						"runbook_url": "https://github.com/tokenbroker/tokenbroker/blob/main/docs/operations.md#tokenbrokerdown",
					},
				}}},
				map[string]any{"eval_time": "25m", "alertname": "TokenbrokerAbsent", "exp_alerts": []any{map[string]any{
					"exp_labels": map[string]string{"severity": "critical", "job": "kubernetes-pods", "namespace": "b", "app_kubernetes_io_instance": "two"},
					"exp_annotations": map[string]string{
						"summary":     "No tokenbroker target is scraped",
						"description": "Prometheus scrapes no tokenbroker target in namespace b: every replica is gone, or the scrape configuration (ServiceMonitor) lost them.",
						"runbook_url": "https://runbooks.example.com/tokenbroker#tokenbrokerabsent",
					},
				}}},
			},
		}},
	}
	raw, err := yaml.Marshal(tests)
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "two_installs_test.yaml")
	writeFile(t, testFile, raw)
	cmd := exec.Command(promtool, "test", "rules", testFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		rules, _ := os.ReadFile(filepath.Join(dir, ruleFiles[1]))
		t.Fatalf("promtool test rules: %v\n%s\nrules of install two:\n%s", err, out, rules)
	} else if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules printed %s", out)
	}
}
