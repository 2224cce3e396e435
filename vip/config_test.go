package vip

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRoundLifetime(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{-time.Second, time.Second},
		{0, time.Second},
		{time.Nanosecond, time.Second},
		{999 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Nanosecond, 2 * time.Second},
		{2500 * time.Millisecond, 3 * time.Second},
		{3 * time.Second, 3 * time.Second},
		{time.Hour + time.Millisecond, time.Hour + time.Second},
	}
	for _, tt := range tests {
		if got := RoundLifetime(tt.in); got != tt.want {
			t.Errorf("RoundLifetime(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func validConfig() Config {
	return Config{
		Assignment: Assignment{Addr: netip.MustParsePrefix("192.0.2.10/24"), Iface: "eth0"},
		Lifetime:   3 * time.Second,
	}
}

func TestConfig_Defaults(t *testing.T) {
	c := validConfig()
	c.Lifetime = 2100 * time.Millisecond
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	d := c.withDefaults()
	if d.GARPRepeat != DefaultGARPRepeat || d.GARPInterval != DefaultGARPInterval || d.Refresh != 0 || d.Logger == nil {
		t.Fatalf("defaults not applied: %+v", d)
	}
	if d.Lifetime != 3*time.Second {
		t.Fatalf("Lifetime %v not rounded up to 3s", d.Lifetime)
	}
	c.GARPRepeat, c.GARPInterval, c.Refresh = 2, 50*time.Millisecond, 10*time.Second
	d = c.withDefaults()
	if d.GARPRepeat != 2 || d.GARPInterval != 50*time.Millisecond || d.Refresh != 10*time.Second {
		t.Fatalf("explicit values overridden: %+v", d)
	}
}

func TestConfig_ValidateNamesField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no address", func(c *Config) { c.Addr = netip.Prefix{} }, "Addr"},
		{"unspecified", func(c *Config) { c.Addr = netip.MustParsePrefix("0.0.0.0/24") }, "Addr"},
		{"loopback", func(c *Config) { c.Addr = netip.MustParsePrefix("127.0.0.5/8") }, "Addr"},
		{"multicast", func(c *Config) { c.Addr = netip.MustParsePrefix("224.0.0.5/24") }, "Addr"},
		{"link-local v6", func(c *Config) { c.Addr = netip.MustParsePrefix("fe80::5/64") }, "Addr"},
		{"mapped", func(c *Config) { c.Addr = netip.MustParsePrefix("::ffff:192.0.2.10/120") }, "Addr"},
		{"broadcast of prefix", func(c *Config) { c.Addr = netip.MustParsePrefix("192.0.2.255/24") }, "Addr"},
		{"limited broadcast", func(c *Config) { c.Addr = netip.MustParsePrefix("255.255.255.255/32") }, "Addr"},
		{"no iface", func(c *Config) { c.Iface = "" }, "Iface"},
		{"long iface", func(c *Config) { c.Iface = "an-interface-name" }, "Iface"},
		{"no lifetime", func(c *Config) { c.Lifetime = 0 }, "Lifetime"},
		{"negative lifetime", func(c *Config) { c.Lifetime = -time.Second }, "Lifetime"},
		{"endless lifetime", func(c *Config) { c.Lifetime = maxLifetime + time.Second }, "Lifetime"},
		{"negative repeat", func(c *Config) { c.GARPRepeat = -1 }, "GARPRepeat"},
		{"huge repeat", func(c *Config) { c.GARPRepeat = maxGARPRepeat + 1 }, "GARPRepeat"},
		{"negative interval", func(c *Config) { c.GARPInterval = -time.Second }, "GARPInterval"},
		{"tiny interval", func(c *Config) { c.GARPInterval = time.Millisecond }, "GARPInterval"},
		{"negative refresh", func(c *Config) { c.Refresh = -time.Second }, "Refresh"},
		{"tiny refresh", func(c *Config) { c.Refresh = time.Millisecond }, "Refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %q does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the field %s", err, tt.field)
			}
		})
	}
}

func TestConfig_ValidEdges(t *testing.T) {
	for _, p := range []string{"192.0.2.10/32", "192.0.2.255/32", "192.0.2.1/31", "10.0.0.0/8", "2001:db8::1/64", "fd00::1/128"} {
		c := validConfig()
		c.Addr = netip.MustParsePrefix(p)
		if err := c.Validate(); err != nil {
			t.Errorf("%s rejected: %v", p, err)
		}
	}
	c := validConfig()
	c.Lifetime = maxLifetime
	c.GARPRepeat, c.GARPInterval, c.Refresh = 1, minGARPInterval, minRefresh
	if err := c.Validate(); err != nil {
		t.Errorf("boundary values rejected: %v", err)
	}
}

func TestMonitorConfig_Validate(t *testing.T) {
	ok := MonitorConfig{Report: func(ProbeReport) {}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal monitor config rejected: %v", err)
	}
	d := ok.withDefaults()
	if d.Interval != DefaultMonitorInterval || d.Timeout != DefaultMonitorTimeout {
		t.Fatalf("defaults not applied: %+v", d)
	}
	tests := []struct {
		edit  func(*MonitorConfig)
		field string
	}{
		{func(c *MonitorConfig) { c.Report = nil }, "Report"},
		{func(c *MonitorConfig) { c.Interval = -1 }, "Interval"},
		{func(c *MonitorConfig) { c.Interval = time.Millisecond }, "Interval"},
		{func(c *MonitorConfig) { c.Timeout = -1 }, "Timeout"},
		{func(c *MonitorConfig) { c.Timeout = time.Microsecond }, "Timeout"},
	}
	for _, tt := range tests {
		c := ok
		tt.edit(&c)
		err := c.Validate()
		if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("want an ErrInvalidConfig naming %s, got %v", tt.field, err)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindARPRequest: "arp-request", KindARPReply: "arp-reply", KindNeighborAdvert: "neighbor-advert", 0: "kind(0)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}
