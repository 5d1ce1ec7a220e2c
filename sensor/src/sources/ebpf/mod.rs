//! The eBPF capture path: resolve offsets, load the embedded object, attach the tracepoints,
//! and stream decoded records from the ring buffer.
pub mod decode;
pub mod hooks;
pub mod last_creds;
mod loader;
pub mod normalize;
pub mod offsets;
pub mod prog_misses;
pub mod raw_tracepoints;
pub mod ring;
pub mod source;
pub mod tracefs;

use aya::{
    maps::{Map, MapData, PerCpuArray},
    Ebpf,
};
use sensor_common::{
    DROP_SLOTS, DROP_SLOT_CONNECT, DROP_SLOT_CONNECT_STASH, DROP_SLOT_CRED_UNKNOWN, DROP_SLOT_EXEC,
    DROP_SLOT_EXIT, DROP_SLOT_FORK, DROP_SLOT_PRIVILEGE, DROP_SLOT_SHED_CONNECT,
};

pub use ring::run_reader;

/// The object built by `build.rs` from `sensor-ebpf` (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("tracefs not found (mount -t tracefs tracefs /sys/kernel/tracing)")]
    NoTracefs,
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetsError),
    #[error("this binary was built without its eBPF object (AYA_BUILD_SKIP)")]
    NotBuilt,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    /// The kernel offsets could not be resolved (the reason, as the probe reported it).
    #[error("{0}")]
    Unresolved(String),
    #[error("map {name}: {reason}")]
    Map { name: &'static str, reason: String },
}

/// A loaded, attached capture: keeps the programs attached while alive.
pub struct EbpfCapture {
    /// Owns the programs and links; dropping it detaches everything.
    pub ebpf: Ebpf,
    pub ring: ring::MappedRing,
    pub drops: KernelDrops,
    pub noise: KernelNoise,
    pub shed: KernelShed,
    /// What this kernel's missing hooks leave unseen, and notes on coverage.
    pub attached: hooks::Attached,
}

/// The shedding level as the programs see it.
pub struct KernelShed(aya::maps::Array<MapData, u32>);

impl KernelShed {
    pub fn set(&mut self, level: u8) -> Result<(), EbpfError> {
        self.0
            .set(0, u32::from(level), 0)
            .map_err(|e| EbpfError::Map {
                name: "SHED",
                reason: e.to_string(),
            })
    }
}

/// Counts of the in-kernel noise filter.
pub struct KernelNoise(PerCpuArray<MapData, u64>);

impl KernelNoise {
    /// (execs dropped per rule index, exits dropped with them), summed over CPUs.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        let sum = |slot: u32| -> u64 { self.0.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        let per_rule = (0..sensor_common::NOISE_RULES_MAX).map(sum).collect();
        (per_rule, sum(sensor_common::NOISE_RULES_MAX))
    }
}

/// The in-kernel counters of records that could not be emitted.
pub struct KernelDrops(PerCpuArray<MapData, u64>, prog_misses::ProgramMisses);

impl KernelDrops {
    /// Sums over CPUs, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let name = |slot| match slot {
            DROP_SLOT_EXEC => Some("ringbuf_process_exec"),
            DROP_SLOT_EXIT => Some("ringbuf_process_exit"),
            DROP_SLOT_CONNECT => Some("ringbuf_net_connect"),
            DROP_SLOT_CONNECT_STASH => Some("connect_stash"),
            DROP_SLOT_PRIVILEGE => Some("ringbuf_privilege_change"),
            DROP_SLOT_SHED_CONNECT => Some("shed_kind_net_connect_kernel"),
            DROP_SLOT_FORK => Some("ringbuf_process_fork"),
            DROP_SLOT_CRED_UNKNOWN => Some("ia32_cred_call_before_unknown"),
            _ => None,
        };
        (0..DROP_SLOTS)
            .filter_map(|slot| {
                let n = name(slot)?;
                let sum = self.0.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0);
                Some((n, sum))
            })
            .collect()
    }

    /// Skipped runs of each program, read from the kernel (see `prog_misses`).
    pub fn misses_by_program(&self) -> Vec<(&str, u64)> {
        self.1.by_program()
    }
}

/// Everything short of attaching: whether this host can run the eBPF path. Used by the probe.
pub fn check_offsets() -> Result<(), String> {
    resolve_offsets().map(|_| ()).map_err(|e| e.to_string())
}

/// Resolves the kernel offsets once (parsing ~5 MB of BTF), for `load`.
pub fn resolve_offsets() -> Result<sensor_common::KernelOffsets, EbpfError> {
    let tracefs = tracefs::find().ok_or(EbpfError::NoTracefs)?;
    Ok(offsets::resolve_host(&tracefs)?)
}

/// Loads and attaches every program.
pub fn load(
    offsets: sensor_common::KernelOffsets,
    ring_bytes: u32,
    noise_comms: &[([u8; 16], u32)],
    argv_bound: u32,
    ia32: hooks::Ia32Plan,
) -> Result<EbpfCapture, EbpfError> {
    let noise_enabled = u32::from(!noise_comms.is_empty());
    if OBJECT.is_empty() {
        return Err(EbpfError::NotBuilt);
    }
    let wakeup_bytes = u64::from(ring_bytes / 4);
    // One exec scratch slot per possible CPU (the program indexes it by CPU id).
    let scratch_slots = aya::util::nr_cpus()
        .map_err(|(path, e)| EbpfError::Map {
            name: "EXEC_SCRATCH",
            reason: format!("{path}: {e}"),
        })?
        .max(1) as u32;
    // No CO-RE relocations to apply (offsets come from our own BTF resolution), so aya gets
    // no BTF, and is kept from parsing it at all (see `loader.rs`).
    let mut ebpf = loader::without_kernel_btf()
        .btf(None)
        .override_global("OFFSETS", &offsets, true)
        .override_global("WAKEUP_BYTES", &wakeup_bytes, true)
        .override_global("NOISE_ENABLED", &noise_enabled, true)
        .override_global("ARGV_BOUND", &argv_bound, true)
        .map_max_entries("EVENTS", ring_bytes)
        .map_max_entries("EXEC_SCRATCH", scratch_slots)
        .load(OBJECT)
        .map_err(|e| EbpfError::Load(Box::new(e)))?;
    let attached = hooks::attach_all(&mut ebpf, ia32)?;
    raw_tracepoints::attach(&mut ebpf)?;
    // After the fork program is attached: every process from then on is known from its fork.
    match last_creds::seed(&mut ebpf, std::path::Path::new("/proc")) {
        Ok(s) => tracing::info!(
            written = s.written,
            known = s.known,
            unreadable = s.unreadable,
            refused = s.refused,
            "last known credentials of the processes already running"
        ),
        Err(e) => tracing::warn!(error = %e, "last known credentials not filled in from /proc"),
    }
    let map_err = |name: &'static str, reason: String| EbpfError::Map { name, reason };
    {
        let comms = ebpf
            .map_mut("NOISE_COMMS")
            .ok_or_else(|| map_err("NOISE_COMMS", "missing".into()))?;
        let mut comms: aya::maps::HashMap<_, [u8; 16], u32> =
            aya::maps::HashMap::try_from(comms)
                .map_err(|e| map_err("NOISE_COMMS", e.to_string()))?;
        for (comm, rule) in noise_comms {
            if *rule < sensor_common::NOISE_RULES_MAX {
                comms
                    .insert(comm, rule, 0)
                    .map_err(|e| map_err("NOISE_COMMS", e.to_string()))?;
            }
        }
    }
    let noise = ebpf
        .take_map("NOISE_DROPS")
        .ok_or_else(|| map_err("NOISE_DROPS", "missing".into()))?;
    let noise = PerCpuArray::try_from(noise).map_err(|e| map_err("NOISE_DROPS", e.to_string()))?;
    let ring = ebpf
        .take_map("EVENTS")
        .ok_or_else(|| map_err("EVENTS", "missing".into()))?;
    let Map::RingBuf(ring) = ring else {
        return Err(map_err("EVENTS", "not a ring buffer".into()));
    };
    let ring =
        ring::MappedRing::new(ring, ring_bytes).map_err(|e| map_err("EVENTS", e.to_string()))?;
    let drops = ebpf
        .take_map("DROPS")
        .ok_or_else(|| map_err("DROPS", "missing".into()))?;
    let drops = PerCpuArray::try_from(drops).map_err(|e| map_err("DROPS", e.to_string()))?;
    let shed = ebpf
        .take_map("SHED")
        .ok_or_else(|| map_err("SHED", "missing".into()))?;
    let shed = aya::maps::Array::try_from(shed).map_err(|e| map_err("SHED", e.to_string()))?;
    let misses = prog_misses::ProgramMisses::of(&ebpf);
    Ok(EbpfCapture {
        ebpf,
        ring,
        drops: KernelDrops(drops, misses),
        noise: KernelNoise(noise),
        shed: KernelShed(shed),
        attached,
    })
}
