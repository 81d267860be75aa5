//! Host and process sampling against real processes: busy and idle children, exited targets, reused pids.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos_agent::process::ProcessId;
use chaos_agent::sample::{MIN_HOST_CPU_INTERVAL, ProcessSample, Sampler};
use common::{DEADLINE, Victim};

/// A shell spinning on one core, killed and reaped when dropped.
struct Busy(Child);

// Setup fails the test the way the tests themselves do.
#[allow(clippy::expect_used)]
impl Busy {
    fn spawn() -> Busy {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn busy shell");
        Busy(child)
    }

    fn id(&self) -> ProcessId {
        ProcessId::of(self.0.id() as i32).expect("busy identity")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Samples `targets` every 100 ms until `done` holds for the samples or `DEADLINE` passes; the last samples.
fn sample_until(
    sampler: &mut Sampler,
    targets: &[ProcessId],
    mut done: impl FnMut(&[ProcessSample]) -> bool,
) -> Vec<ProcessSample> {
    let end = Instant::now() + DEADLINE;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let samples = sampler.sample_processes(targets);
        if done(&samples) || Instant::now() >= end {
            return samples;
        }
    }
}

#[test]
fn a_busy_child_uses_most_of_a_core_and_an_idle_one_little() {
    let busy = Busy::spawn();
    let idle = Victim::sleep();
    let targets = [busy.id(), idle.id()];
    let mut sampler = Sampler::new();

    let first = sampler.sample_processes(&targets);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|s| s.alive && s.cpu.is_none()), "no reference on first sight: {first:?}");
    assert_eq!(first[0].id, targets[0]);
    assert_eq!(first[1].id, targets[1]);

    // On a loaded machine a 100 ms window may fall short; a later window shows the spinning core.
    let samples = sample_until(&mut sampler, &targets, |s| s[0].cpu.is_some_and(|c| c > 0.3));
    let (busy_cpu, idle_cpu) = (samples[0].cpu.expect("busy cpu"), samples[1].cpu.expect("idle cpu"));
    assert!(busy_cpu > 0.3, "busy child: {samples:?}");
    assert!(busy_cpu < 1.5, "one thread cannot use much more than one core: {samples:?}");
    assert!(idle_cpu < busy_cpu, "sleep uses less than a spinning shell: {samples:?}");
    assert!(idle_cpu < 0.2, "sleep is idle: {samples:?}");
    // A sleep child holds a few hundred KiB to a few MiB resident.
    assert!(samples[1].rss_bytes > 0 && samples[1].rss_bytes < 64 << 20, "idle rss: {samples:?}");
    assert!(samples[0].rss_bytes > 0, "busy rss: {samples:?}");
}

#[test]
fn an_exited_target_is_not_alive() {
    let mut victim = Victim::sleep();
    let id = victim.id();
    let mut sampler = Sampler::new();
    assert!(sampler.sample_processes(&[id])[0].alive);

    victim.child.kill().unwrap();
    // Not yet reaped: a zombie has exited too.
    let zombie = sample_until(&mut sampler, &[id], |s| !s[0].alive);
    assert_eq!(zombie, [ProcessSample { id, cpu: None, rss_bytes: 0, alive: false }]);
    victim.child.wait().unwrap();
    assert!(!sampler.sample_processes(&[id])[0].alive, "reaped");
}

#[test]
fn a_pid_with_another_start_time_is_never_attributed() {
    let victim = Victim::sleep();
    let real = victim.id();
    let reused = ProcessId { start_time: real.start_time + 1, ..real };
    let mut sampler = Sampler::new();
    for _ in 0..2 {
        let samples = sampler.sample_processes(&[reused, real]);
        assert_eq!(samples[0], ProcessSample { id: reused, cpu: None, rss_bytes: 0, alive: false });
        assert!(
            samples[1].alive && samples[1].rss_bytes > 0,
            "the real process is still sampled: {samples:?}"
        );
    }
    let earlier = ProcessId { start_time: real.start_time.saturating_sub(1), ..real };
    assert!(!sampler.sample_processes(&[earlier])[0].alive);
}

#[test]
fn targets_dropped_from_the_list_lose_their_reference() {
    let (a, b) = (Victim::sleep(), Victim::sleep());
    let mut sampler = Sampler::new();
    sampler.sample_processes(&[a.id(), b.id()]);
    let samples = sampler.sample_processes(&[a.id()]);
    assert!(samples[0].cpu.is_some(), "{samples:?}");
    let samples = sampler.sample_processes(&[a.id(), b.id()]);
    assert!(samples[0].cpu.is_some() && samples[1].cpu.is_none(), "{samples:?}");
    assert!(sampler.sample_processes(&[]).is_empty());
}

#[test]
fn host_sample_has_memory_load_and_cpu_from_the_second_call() {
    let mut sampler = Sampler::new();
    let first = sampler.sample_host();
    assert_eq!(first.cpu, None, "no reference yet: {first:?}");
    assert!(first.memory_used > 0.0 && first.memory_used < 1.0, "{first:?}");
    assert!(
        first.memory_total_bytes > 0 && first.memory_available_bytes <= first.memory_total_bytes,
        "{first:?}"
    );
    assert!(first.cpus >= 1, "{first:?}");
    assert!(first.load1 >= 0.0 && first.load5 >= 0.0 && first.load15 >= 0.0, "{first:?}");

    std::thread::sleep(MIN_HOST_CPU_INTERVAL + Duration::from_millis(50));
    let second = sampler.sample_host();
    let cpu = second.cpu.expect("cpu on the second call");
    assert!((0.0..=1.0).contains(&cpu), "{second:?}");
    assert_eq!(second.cpus, first.cpus);
    // Too soon for a fresh rate: the previous figure is repeated.
    assert_eq!(sampler.sample_host().cpu, Some(cpu));
}
