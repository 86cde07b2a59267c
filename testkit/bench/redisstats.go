package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
)

// redisStats reads Redis's own counters. The commands this reader sends
// (CONFIG, INFO) are left out of what it reports.
type redisStats struct{ rc *redis.Client }

func (s *redisStats) reset(ctx context.Context) error {
	return s.rc.ConfigResetStat(ctx).Err()
}

// commands is INFO commandstats since the last reset: calls per command,
// without this reader's own.
func (s *redisStats) commands(ctx context.Context) (map[string]int64, error) {
	c, _, err := s.commandsAndOutput(ctx)
	return c, err
}

// commandsAndOutput is commands and total_net_output_bytes since the last
// reset, less the bytes of the replies to this reader.
func (s *redisStats) commandsAndOutput(ctx context.Context) (map[string]int64, int64, error) {
	stats, err := s.rc.Info(ctx, "stats").Result()
	if err != nil {
		return nil, 0, err
	}
	cs, err := s.rc.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, 0, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(cs, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		switch name {
		case "config", "info":
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	// The reply to CONFIG RESETSTAT ("+OK\r\n") is counted after the reset.
	return out, infoInt(stats, "total_net_output_bytes") - 5, nil
}

func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func subscribers(ctx context.Context, rc *redis.Client, channel string) (int64, error) {
	m, err := rc.PubSubNumSub(ctx, channel).Result()
	return m[channel], err
}

// messageBytes is the size of one pub/sub message as Redis sends it to
// each subscriber (RESP2: ["message", channel, payload]).
func messageBytes(channel, payload string) int {
	bulk := func(s string) int { return len("$"+strconv.Itoa(len(s))+"\r\n") + len(s) + 2 }
	return len("*3\r\n") + bulk("message") + bulk(channel) + bulk(payload)
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func divide(m map[string]int64, n int) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = (v + int64(n)/2) / int64(n)
	}
	return out
}

// monitor is a MONITOR connection to Redis, read until stop.
type monitor struct {
	conn  net.Conn
	lines chan []string
}

// monitorLimit bounds the lines a trace keeps.
const monitorLimit = 200

func startMonitor(addr string) (*monitor, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		conn.Close()
		return nil, errors.Join(fmt.Errorf("MONITOR: %q", line), err)
	}
	m := &monitor{conn: conn, lines: make(chan []string, 1)}
	go func() {
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if len(lines) < monitorLimit {
				lines = append(lines, summarizeMonitorLine(line))
			}
		}
		m.lines <- lines
	}()
	return m, nil
}

func (m *monitor) stop() []string {
	m.conn.Close()
	return <-m.lines
}

// summarizeMonitorLine keeps of a MONITOR line its time, the client (or
// "lua" inside a script), the command and the key's suffix; values (sealed
// tokens, owners) are left out.
func summarizeMonitorLine(line string) string {
	line = strings.TrimSpace(strings.TrimPrefix(line, "+"))
	ts, rest, _ := strings.Cut(line, " ")
	client := ""
	if i := strings.Index(rest, "]"); i > 0 {
		client = strings.TrimPrefix(rest[:i], "[0 ")
		rest = strings.TrimSpace(rest[i+1:])
	}
	var fields []string
	for _, f := range strings.Split(rest, "\" \"") {
		fields = append(fields, strings.Trim(f, "\""))
	}
	if len(fields) == 0 {
		return line
	}
	cmd := strings.ToLower(fields[0])
	out := []string{ts, client, cmd}
	for _, f := range fields[1:] {
		switch {
		case strings.HasPrefix(f, store.KeyPrefix):
			if i := strings.LastIndex(f, "}"); i >= 0 {
				out = append(out, "{key}"+f[i+1:])
			} else {
				out = append(out, f)
			}
		case cmd == "evalsha" && len(f) == 40:
			out = append(out, f[:8])
		}
	}
	return strings.Join(out, " ")
}
