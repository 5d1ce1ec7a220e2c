//! The one place where the components' typed counters become `sensor_health` fields: losses
//! go to `drops`, every other count to `events`. Each component keeps one stats struct of
//! atomics; the names users and tests read are written here and nowhere else (see
//! docs/ARCHITECTURE.md, "Telemetry").
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::counters::Counters;
use crate::enrich::CacheStats;
use crate::event::Kind;
use crate::filter::FilterStats;
use crate::pipeline::{shed, AttribStats};
use crate::sinks::grpc::{spool, ShipStats};
use crate::sources::audit::source::AuditHealth;
use crate::sources::conntrack::source::ConntrackStats;
use crate::sources::ebpf::source::EbpfStats;
use crate::sources::files::FileStats;
use crate::sources::logins::source::LoginStats;

/// A health event's two counter maps.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HealthFields {
    /// Losses: events that will never be seen.
    pub drops: BTreeMap<String, u64>,
    /// Everything else: events by kind and the figures of each stage.
    pub events: BTreeMap<String, u64>,
}

impl HealthFields {
    pub fn loss(&mut self, name: impl Into<String>, n: u64) {
        self.drops.insert(name.into(), n);
    }

    pub fn count(&mut self, name: impl Into<String>, n: u64) {
        self.events.insert(name.into(), n);
    }

    /// Loss counters read as they are now.
    pub fn losses(&mut self, named: &[(&str, &AtomicU64)]) {
        for (name, c) in named {
            self.loss(*name, c.load(Relaxed));
        }
    }

    /// Other counters read as they are now.
    pub fn counts(&mut self, named: &[(&str, &AtomicU64)]) {
        for (name, c) in named {
            self.count(*name, c.load(Relaxed));
        }
    }
}

/// A component's counters, as health fields.
pub trait Telemetry: Send + Sync {
    fn report(&self, out: &mut HealthFields);

    /// A part of the health reason that can change while running; `None` while there is
    /// nothing to say.
    fn live_reason(&self) -> Option<String> {
        None
    }
}

/// The fields of one component alone (for tests and tools).
pub fn fields_of(t: &dyn Telemetry) -> HealthFields {
    let mut f = HealthFields::default();
    t.report(&mut f);
    f
}

impl Telemetry for Counters {
    fn report(&self, out: &mut HealthFields) {
        for k in Kind::ALL {
            out.count(k.as_str(), self.events_of(k));
        }
        out.counts(&[
            ("duplicate_exits", &self.duplicate_exits),
            ("written", &self.written),
        ]);
        out.losses(&[
            ("decode_errors", &self.decode_errors),
            ("write_errors", &self.write_errors),
        ]);
    }
}

impl Telemetry for EbpfStats {
    fn report(&self, out: &mut HealthFields) {
        // The kernel's noise counts reach the filter's figures before those are written.
        self.publish_noise();
        for (name, n) in self.kernel_drops() {
            out.loss(name, n);
        }
        let misses = self.misses();
        out.loss("ebpf_program_misses", misses.events);
        out.count("ebpf_syscall_hook_misses", misses.syscall_hooks);
    }
}

impl Telemetry for AuditHealth {
    fn report(&self, out: &mut HealthFields) {
        let s = &self.stats;
        out.loss("audit_kernel_lost", s.kernel_lost.load(Relaxed));
        out.loss("audit_serial_gaps", s.serial_gaps.load(Relaxed));
        out.loss("audit_group_overflows", s.group_overflows.load(Relaxed));
        out.loss("audit_parse_errors", s.parse_errors.load(Relaxed));
        out.loss("audit_socket_overflows", s.socket_overflows.load(Relaxed));
        out.loss(
            "proc_connector_overflows",
            s.proc_connector_overflows.load(Relaxed),
        );
        // Every audit and proc-connector socket counts its forgeries there.
        out.count(
            "audit_netlink_forged",
            crate::sources::audit::control::NETLINK_FORGED.load(Relaxed),
        );
        out.count("audit_group_timeouts", s.group_timeouts.load(Relaxed));
        out.count("audit_rules_repaired", s.rules_repaired.load(Relaxed));
        out.count("audit_registration_lost", s.registration_lost.load(Relaxed));
        out.count("audit_slot_handovers", u64::from(self.handover.happened()));
        out.count(
            "audit_handover_duplicates_dropped",
            self.handover.duplicates_dropped.load(Relaxed),
        );
    }

    fn live_reason(&self) -> Option<String> {
        self.handover.describe()
    }
}

impl Telemetry for LoginStats {
    fn report(&self, out: &mut HealthFields) {
        out.losses(&[
            ("login_corrupt_records", &self.corrupt_records),
            ("login_torn_bytes", &self.torn_bytes),
        ]);
        out.counts(&[
            ("login_file_rotations", &self.rotations),
            ("login_file_truncations", &self.truncations),
        ]);
    }
}

impl Telemetry for FileStats {
    fn report(&self, out: &mut HealthFields) {
        out.losses(&[
            ("files_queue_overflows", &self.queue_overflows),
            ("files_path_unresolved", &self.unresolved),
            ("files_parse_errors", &self.parse_errors),
            ("files_watch_failures", &self.watch_failures),
        ]);
        out.counts(&[
            ("files_filtered_out", &self.filtered_out),
            ("files_own_events", &self.own_events),
            ("files_modify_coalesced", &self.coalesced),
            ("files_synthesized_creates", &self.synthesized),
            ("files_inotify_watches", &self.watches),
            ("files_fanotify_marks", &self.marks),
            ("files_process_gone", &self.process_gone),
            ("files_nameless_events", &self.nameless),
            ("files_outside_unresolved", &self.outside_unresolved),
            ("files_trees_missing", &self.trees_missing),
            ("files_ignore_marks", &self.ignore_marks),
            ("files_ignore_marks_full", &self.ignore_marks_full),
            ("files_mark_failures", &self.mark_failures),
            ("files_dir_marks", &self.dir_marks),
            ("files_dir_marks_full", &self.dir_marks_full),
            ("files_changed_while_ignored", &self.changed_while_ignored),
            ("files_tree_dirs", &self.tree_dirs),
            ("files_tree_dirs_untrusted", &self.tree_dirs_untrusted),
        ]);
    }
}

impl Telemetry for ConntrackStats {
    fn report(&self, out: &mut HealthFields) {
        out.loss(
            "conntrack_socket_overflows",
            self.socket_overflows.load(Relaxed),
        );
        out.loss("conntrack_parse_errors", self.parse_errors.load(Relaxed));
        out.count("conntrack_new", self.new.load(Relaxed));
        out.count("conntrack_destroy", self.destroy.load(Relaxed));
        out.count(
            "conntrack_loopback_skipped",
            self.loopback_skipped.load(Relaxed),
        );
        out.count(
            "conntrack_tracking_table",
            self.tracking_table.load(Relaxed),
        );
        out.count(
            "conntrack_netlink_forged",
            crate::sources::conntrack::source::NETLINK_FORGED.load(Relaxed),
        );
    }
}

/// Process-cache figures (evictions are not losses: the events still ship, only their
/// enrichment may be thinner).
impl Telemetry for Mutex<CacheStats> {
    fn report(&self, out: &mut HealthFields) {
        let s = *self.lock().unwrap_or_else(|e| e.into_inner());
        out.count("process_cache_entries", s.entries);
        out.count("process_cache_evictions", s.evictions);
        out.count("process_cache_swept_lost", s.swept_lost);
        out.count("process_cache_proc_reads", s.proc_reads);
        out.count("process_cache_proc_misses", s.proc_misses);
    }
}

impl Telemetry for AttribStats {
    fn report(&self, out: &mut HealthFields) {
        out.counts(&[
            ("forks_seen", &self.forks_seen),
            ("forks_without_parent", &self.forks_without_parent),
            ("forks_forgotten", &self.forks_forgotten),
            ("held_for_process", &self.held),
            ("held_resolved", &self.held_resolved),
            ("held_ordered", &self.held_ordered),
            ("held_timed_out", &self.held_timed_out),
        ]);
        for ((kind, source), n) in self.incomplete() {
            out.count(format!("incomplete_{kind}_{source}"), n);
        }
    }
}

impl Telemetry for ShipStats {
    fn report(&self, out: &mut HealthFields) {
        for (name, c) in spool::EVICTED_NAMES.iter().zip(self.evicted.iter()) {
            out.loss(*name, c.load(Relaxed));
        }
        out.losses(&[
            ("spool_write_errors", &self.spool_write_errors),
            ("spool_corrupt_batches", &self.spool_corrupt_batches),
        ]);
        out.counts(&[
            ("shipped_acked", &self.events_acked),
            ("shipped_duplicates", &self.duplicates),
            ("spool_pending", &self.spool_pending_events),
            ("spool_bytes", &self.spool_bytes),
            ("spool_rescued_exits", &self.rescued_exits),
            ("spool_unwritten", &self.spool_unwritten_events),
            ("spool_write_failures", &self.spool_write_failures),
            ("ship_connects", &self.connects),
            ("ship_connect_failures", &self.connect_failures),
            ("ship_acks_unknown", &self.acks_unknown),
        ]);
    }
}

/// `filtered_<rule>` for every rule, plus the exit-consistency and redaction counters.
impl Telemetry for FilterStats {
    fn report(&self, out: &mut HealthFields) {
        for (i, name) in self.rule_names().iter().enumerate() {
            out.count(format!("filtered_{name}"), self.filtered(i));
        }
        out.count(
            "filter_exits_dropped",
            self.exits_dropped.load(Relaxed) + self.kernel_exits_dropped.load(Relaxed),
        );
        out.counts(&[
            ("filter_exit_tracking_evictions", &self.tracking_evictions),
            ("filter_exit_inconsistencies", &self.exit_inconsistencies),
            ("redacted_events", &self.redacted_events),
            ("redacted_args", &self.redacted_args),
        ]);
    }
}

/// `shed_<reason>_<kind>` for every non-zero count (losses), the level now and how often it
/// was raised (not losses).
impl Telemetry for shed::ShedStats {
    fn report(&self, out: &mut HealthFields) {
        for r in shed::REASONS {
            for k in Kind::ALL {
                let n = self.shed_of(r, k);
                if n > 0 {
                    out.loss(format!("shed_{}_{}", r.as_str(), k.as_str()), n);
                }
            }
        }
        out.count("shed_level", u64::from(self.level()));
        out.count("shed_level_raises", self.raises());
    }
}
