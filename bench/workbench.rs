//! The workbench benchmark: speed and memory goals, each measured side by side in one run and
//! printed as a ratio (timed tests would be flaky on a loaded 2-core machine; a benchmark is not).
//!
//!   cargo bench --bench workbench            # uses your BOOTLAB_HOME / XDG cache
//!
//! What it compares:
//! 1. rebuilding a recipe after an edit (podman build + export + OSTree convert + commit) vs
//!    building it again unchanged (cache hit);
//! 2. making a golden disk for a new commit vs asking for it again (cache hit);
//! 3. a cold boot to a ready guest agent vs starting from the cached booted snapshot (goal ≥ 10×);
//! 4. memory of the TUI's bounded log pane vs keeping every line, after a long build log.
//!
//! Needs root and the host packages (`bash .ci/setup`), like the offline pipeline itself.

use bootlab::events::{CancellationToken, Emitter};
use bootlab::paths::Paths;
use bootlab::recipe::Recipe;
use bootlab::vm::{self, UpOptions, VmClient, images};
use std::path::Path;
use std::time::{Duration, Instant};

/// Counts live heap bytes so the memory row measures, not guesses.
struct Counting;
static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only adding bookkeeping.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(
            new as isize - l.size() as isize,
            std::sync::atomic::Ordering::Relaxed,
        );
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_bytes() -> isize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

struct Row {
    what: &'static str,
    slow: (&'static str, f64),
    fast: (&'static str, f64),
    unit: &'static str,
    goal: Option<f64>,
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported: it is one run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let paths = Paths::from_env();
    paths.ensure().unwrap();
    let rows = rt.block_on(run(&paths));
    println!(
        "\n{:<28} {:>22} {:>22} {:>9}  goal",
        "", "slow path", "fast path", "ratio"
    );
    let mut missed = 0;
    for r in &rows {
        let ratio = r.slow.1 / r.fast.1.max(1e-9);
        let goal = match r.goal {
            Some(g) if ratio >= g => format!(">= {g}x met"),
            Some(g) => {
                missed += 1;
                format!(">= {g}x MISSED")
            }
            None => String::new(),
        };
        println!(
            "{:<28} {:>13} {:>6.1}{:<2} {:>13} {:>6.1}{:<2} {:>8.1}x  {goal}",
            r.what, r.slow.0, r.slow.1, r.unit, r.fast.0, r.fast.1, r.unit, ratio
        );
    }
    if missed > 0 {
        std::process::exit(1);
    }
}

async fn run(paths: &Paths) -> Vec<Row> {
    let ev = Emitter::null();
    let cancel = CancellationToken::new();
    let mut rows = Vec::new();

    // 1 + 2: a private copy of debian-minimal, edited, so the "slow" build is a real rebuild.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench-minimal");
    copy_dir(&bootlab::paths::recipes_dir().join("debian-minimal"), &dir);
    let toml = std::fs::read_to_string(dir.join("recipe.toml")).unwrap();
    std::fs::write(
        dir.join("recipe.toml"),
        toml.replace("name = \"debian-minimal\"", "name = \"bench-minimal\""),
    )
    .unwrap();
    let nonce = format!("bench run {}\n", chrono::Utc::now().to_rfc3339());
    std::fs::write(dir.join("motd"), nonce).unwrap();
    let recipe = Recipe::load(&dir).expect("bench recipe");
    let v = recipe.resolve_version(Some("v1")).unwrap().clone();
    let t = Instant::now();
    let cold = bootlab::pipeline::build_image(paths, &recipe, &v, &ev, &cancel)
        .await
        .expect("build after edit");
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let hit = bootlab::pipeline::build_image(paths, &recipe, &v, &ev, &cancel)
        .await
        .expect("build unchanged");
    let hit_s = t.elapsed().as_secs_f64();
    assert_eq!(
        cold.commit, hit.commit,
        "an unchanged build gives the same commit"
    );
    rows.push(Row {
        what: "image build",
        slow: ("after edit", cold_s),
        fast: ("unchanged", hit_s),
        unit: "s",
        goal: Some(10.0),
    });

    let t = Instant::now();
    let d = bootlab::pipeline::make_disk(paths, recipe.name(), &v.id, &cold.commit, &ev, &cancel)
        .await
        .expect("disk");
    let disk_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let d2 = bootlab::pipeline::make_disk(paths, recipe.name(), &v.id, &cold.commit, &ev, &cancel)
        .await
        .expect("disk again");
    let disk_hit_s = t.elapsed().as_secs_f64();
    assert_eq!(d.path, d2.path);
    rows.push(Row {
        what: "golden disk",
        slow: ("new commit", disk_s),
        fast: ("same commit", disk_hit_s),
        unit: "s",
        goal: Some(10.0),
    });
    // The bench's disk and its booted image are not worth keeping.
    let bench_disks: Vec<_> = std::fs::read_dir(paths.disks())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("bench-minimal-"))
        })
        .collect();

    // 3: cold boot vs snapshot start, on the same golden disk.
    let mut o = UpOptions::new(format!("bench-boot-{}", std::process::id()));
    o.golden = Some(d.path.clone());
    o.boot_timeout = Some(Duration::from_secs(400));
    let t = Instant::now();
    vm::up(paths, o.clone(), &ev, &cancel)
        .await
        .expect("cold boot");
    let boot_s = t.elapsed().as_secs_f64();
    vm::down(paths, &o.name, true, Duration::from_secs(30))
        .await
        .unwrap();

    let booted = images::booted_image(paths, &d.path, &o, &ev, &cancel)
        .await
        .expect("booted image");
    let mut s = UpOptions::new(format!("bench-restore-{}", std::process::id()));
    s.image = Some(booted);
    s.from_snapshot = Some(images::BOOTED_TAG.into());
    s.accel = o.accel;
    let t = Instant::now();
    vm::up(paths, s.clone(), &ev, &cancel)
        .await
        .expect("start from snapshot");
    let c = VmClient::connect(paths, &s.name).await.unwrap();
    assert!(
        c.exec(&["true"]).await.unwrap().success(),
        "guest answers after restore"
    );
    let restore_s = t.elapsed().as_secs_f64();
    vm::down(paths, &s.name, true, Duration::from_secs(30))
        .await
        .unwrap();
    rows.push(Row {
        what: "guest ready",
        slow: ("cold boot", boot_s),
        fast: ("from snapshot", restore_s),
        unit: "s",
        goal: Some(10.0),
    });
    for p in bench_disks {
        let _ = std::fs::remove_file(&p);
    }
    for e in std::fs::read_dir(paths.disks()).unwrap().flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("bench-minimal-")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }

    // 4: memory of a long build log: the TUI's bounded pane vs keeping every line.
    // Live heap bytes are counted by this binary's allocator, not estimated.
    let line =
        |i: usize| format!("STEP {i}: RUN something that prints a fairly ordinary build log line");
    let before = live_bytes();
    let mut every: Vec<(String, String)> = Vec::new();
    for i in 0..200_000 {
        every.push(("build".to_string(), line(i)));
    }
    let unbounded = live_bytes() - before;
    drop(every);
    let before = live_bytes();
    let mut pane = bootlab::tui::logpane::LogPane::default();
    for i in 0..200_000 {
        pane.push("build", &line(i), false);
    }
    let bounded = live_bytes() - before;
    drop(pane);
    rows.push(Row {
        what: "log pane, 200k lines",
        slow: ("every line", unbounded as f64 / 1048576.0),
        fast: ("bounded pane", bounded as f64 / 1048576.0),
        unit: "MB",
        goal: Some(10.0),
    });
    rows
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
