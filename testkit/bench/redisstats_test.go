package bench

import "testing"

func TestSummarizeMonitorLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, line, want string
	}{
		{"a client's GET keeps the key's suffix", `+1796611323.063047 [0 127.0.0.1:56688] "get" "tokenbroker:v1:{abc}:token"` + "\r\n",
			"1796611323.063047 127.0.0.1:56688 get {key}:token"},
		{"a script's command is lua's", `+1796611323.064310 [0 lua] "set" "tokenbroker:v1:{abc}:lock" "0123456789abcdef" "NX" "PX" "2000"` + "\r\n",
			"1796611323.064310 lua set {key}:lock"},
		{"EVALSHA keeps the script's short id, not its arguments", `+1796611323.169517 [0 127.0.0.1:56688] "evalsha" "1db3cc0b0123456789abcdef0123456789abcdef" "3" "tokenbroker:v1:{abc}:token" "sealed\x00value"` + "\r\n",
			"1796611323.169517 127.0.0.1:56688 evalsha 1db3cc0b {key}:token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := summarizeMonitorLine(tc.line); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMessageBytesIsRESP2Message(t *testing.T) {
	t.Parallel()
	payload := "0123456789abcdef tokenbroker:v1:{k}:token"
	want := "*3\r\n$7\r\nmessage\r\n$28\r\ntokenbroker:v1:invalidations\r\n$41\r\n" + payload + "\r\n"
	if got := messageBytes("tokenbroker:v1:invalidations", payload); got != len(want) {
		t.Errorf("messageBytes = %d, want %d", got, len(want))
	}
}

func TestInfoIntAndDivide(t *testing.T) {
	t.Parallel()
	info := "# Stats\r\ntotal_connections_received:12\r\ntotal_net_output_bytes:1651\r\n"
	if got := infoInt(info, "total_net_output_bytes"); got != 1651 {
		t.Errorf("infoInt = %d, want 1651", got)
	}
	if got := infoInt(info, "missing"); got != 0 {
		t.Errorf("infoInt of a missing field = %d, want 0", got)
	}
	got := divide(map[string]int64{"get": 140, "evalsha": 61}, 20)
	if got["get"] != 7 || got["evalsha"] != 3 {
		t.Errorf("divide = %v, want get 7, evalsha 3 (rounded)", got)
	}
}
