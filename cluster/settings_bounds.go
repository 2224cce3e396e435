package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Upper bounds on settings that Settings.Validate does not bound by itself.
// Any value inside them is one the agents can run with; outside them a
// typo (100000h for 1s) or a hostile command would leave the cluster
// unable to act for years, or fill every replica's memory.
const (
	// maxTimingSetting bounds every duration under timings: the lease
	// and Raft timings are milliseconds to seconds; an hour is far past
	// any sane value and still recovers within the hour.
	maxTimingSetting = time.Hour
	// maxOtherDuration bounds every other duration (hold_down allows a
	// day, and nothing else needs more).
	maxOtherDuration = 24 * time.Hour
	// maxGARPRefresh bounds vip.garp_refresh, as conflict_probe_interval.
	maxGARPRefresh = time.Hour
	// maxChecks bounds how many health checks a GPU node runs.
	maxChecks = 64
	// maxURLLen and maxPathLen bound service.health_url and the compose
	// file and service names.
	maxURLLen  = 2048
	maxPathLen = 4096
)

// boundedInValidate are the durations Settings.Validate (or the lease
// parameters) already bound with a check of their own; the walk below
// leaves them to it so that a bad value is reported once.
var boundedInValidate = map[string]bool{
	"vip.garp_interval": true, "vip.garp_refresh": true, "vip.conflict_probe_interval": true,
	"failover.hold_down": true, "failover.stop_handover": true,
	"timings.lease_duration": true, "timings.lease_drift": true, "timings.lease_renew_interval": true,
	"timings.lease_retry_interval": true, "timings.vip_lifetime": true,
	"timings.raft_heartbeat_timeout": true, "timings.raft_election_timeout": true,
}

// validateBounds checks the upper (and sign) bounds that Settings.Validate
// does not check field by field; Validate calls it. It walks the settings
// by reflection for durations, so a duration added later is bounded
// without being named here.
func (s Settings) validateBounds() error {
	var errs []error
	walkDurations(reflect.ValueOf(s), "", func(key string, d time.Duration) {
		if boundedInValidate[key] {
			return
		}
		limit := maxOtherDuration
		if strings.HasPrefix(key, "timings.") {
			limit = maxTimingSetting
		}
		switch {
		case d < 0:
			errs = append(errs, fmt.Errorf("key %q: %v is negative", key, d))
		case d > limit:
			errs = append(errs, fmt.Errorf("key %q: %v is over the limit of %v", key, d, limit))
		}
	})
	if d := time.Duration(s.VIP.GARPRefresh); d > maxGARPRefresh {
		errs = append(errs, fmt.Errorf("key \"vip.garp_refresh\": %v must be 0 (off) or 1s-%v", d, maxGARPRefresh))
	}
	if n := len(s.Checks); n > maxChecks {
		errs = append(errs, fmt.Errorf("key \"checks\": %d checks, at most %d", n, maxChecks))
	}
	if n := len(s.Service.HealthURL); n > maxURLLen {
		errs = append(errs, fmt.Errorf("key \"service.health_url\": %d bytes, at most %d", n, maxURLLen))
	}
	for key, v := range map[string]string{"service.compose_file": s.Service.ComposeFile, "service.compose_service": s.Service.ComposeService} {
		if len(v) > maxPathLen {
			errs = append(errs, fmt.Errorf("key %q: %d bytes, at most %d", key, len(v), maxPathLen))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeOf(Duration(0))

// walkDurations calls fn for every Duration field in v (a struct), with
// its dotted key from the JSON tags.
func walkDurations(v reflect.Value, prefix string, fn func(key string, d time.Duration)) {
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		switch {
		case f.Type == durationType:
			fn(key, time.Duration(v.Field(i).Int()))
		case f.Type.Kind() == reflect.Struct:
			walkDurations(v.Field(i), key+".", fn)
		}
	}
}

// validateReplicatedSettings is the FSM's settings validator (injected in
// openRaft): every SetSettings, whoever proposed it, is decoded and checked
// with Settings.Validate, as `config apply` checks it, upper bounds
// included, as it is applied.
// It is deterministic (no clock, file or network), so every replica gives
// the same verdict. The checks whose schema belongs to other packages
// (Config.ValidateSettings: health checks, container spec) run only where
// a change is proposed through `config apply`.
func validateReplicatedSettings(raw json.RawMessage) error {
	s, err := decodeSettings(raw)
	if err != nil {
		return err
	}
	return s.Validate()
}
