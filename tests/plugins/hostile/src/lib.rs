//! Test fixture: a plugin that tries, on request, everything a plugin must not
//! be able to do. The step config picks the attempt; `apply` reports what
//! happened so tests can assert the host refused it.
//!
//! Built a second time with the `describe-loop` feature (as
//! `hostile-describe-loop.wasm`), its `describe` never returns: `describe`
//! gets no config, so a build feature is what picks that attempt.

use serde::Deserialize;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker, probe, state};
use std::io::Write;

struct Hostile;

#[derive(Deserialize)]
#[serde(tag = "attempt", rename_all = "kebab-case")]
enum Attempt {
    Noop,
    Read {
        path: String,
    },
    Write {
        path: String,
    },
    List {
        path: String,
    },
    Docker {
        service: String,
    },
    DockerRestart {
        service: String,
    },
    ImageArchive {
        service: String,
        image: String,
        path: String,
    },
    Exec {
        service: String,
        command: Vec<String>,
    },
    /// `docker.start-replacement` of the service, `count` times.
    StartReplacements {
        service: String,
        count: usize,
    },
    /// `docker.signal`.
    Signal {
        service: String,
        signal: String,
    },
    /// Return these outputs, each with the value `hostile`.
    Outputs {
        keys: Vec<String>,
    },
    /// Report the latest output of `key` the step was handed.
    ReadOutput {
        key: String,
    },
    /// Refuse, after writing `write` if it is set.
    Refuse {
        #[serde(default)]
        write: Option<String>,
    },
    /// `files.hash` of the paths.
    FilesHash {
        paths: Vec<String>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: String,
    },
    Resolve {
        host: String,
    },
    Env,
    Stderr {
        text: String,
    },
    StateRoundTrip {
        key: String,
        value: String,
    },
    Spin,
    Memory,
    Panic,
    /// Write `mb` MiB to stderr, or through the log import, in 1 KiB lines.
    Flood {
        mb: usize,
        #[serde(default)]
        via_log: bool,
    },
    /// Return `kb` KiB of outputs.
    BigReport {
        kb: usize,
    },
    /// Create the symlink `link` pointing at `target` (`ln -s target link`).
    Symlink {
        target: String,
        link: String,
    },
    /// Write 1 MiB files into `dir` until a write fails.
    FillDisk {
        dir: String,
    },
    /// `state.set` of `count` distinct keys, each to a `value_bytes` value.
    StateKeys {
        count: usize,
        value_bytes: usize,
    },
    /// Recurse `depth` calls deep: on the wasm call stack only, or
    /// `in_memory`, with 1 KiB of each frame on the stack Rust keeps in
    /// linear memory.
    Recurse {
        depth: u32,
        #[serde(default)]
        in_memory: bool,
    },
}

impl Plugin for Hostile {
    fn describe() -> PluginInfo {
        if cfg!(feature = "describe-loop") {
            spin();
        }
        // It declares nginx's commands as the nginx plugins do, and a
        // shell: tests prove that a narrowed grant still refuses the shell,
        // and that no argument can be added to a declared command.
        slipway_sdk::plugin_info!(
            needs: ["whatever the test grants"],
            exec: [
                ["nginx", "-t"],
                ["nginx", "-T"],
                ["nginx", "-s", "reload"],
                ["nslookup", "{service}"],
                ["sh", "-c", "wget -qO- http://api:8000/"],
                ["head", "-c", "{number}", "/dev/zero"],
                ["sleep", "{number}"]
            ]
        )
    }
}

impl Step for Hostile {
    fn apply(ctx: Context) -> Result<Report, String> {
        let attempt: Attempt = ctx.config()?;
        let summary = match attempt {
            Attempt::Noop => "noop".to_owned(),
            Attempt::Read { path } => {
                let bytes = std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?;
                format!(
                    "read {} bytes: {}",
                    bytes.len(),
                    String::from_utf8_lossy(&bytes)
                )
            }
            Attempt::Write { path } => {
                std::fs::write(&path, b"owned").map_err(|e| format!("write {path}: {e}"))?;
                format!("wrote {path}")
            }
            Attempt::List { path } => {
                let names: Vec<String> = std::fs::read_dir(&path)
                    .map_err(|e| format!("list {path}: {e}"))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                format!("listed {}", names.join(","))
            }
            Attempt::Docker { service } => {
                let containers = docker::inspect(&service)?;
                format!("inspected {} containers", containers.len())
            }
            Attempt::DockerRestart { service } => {
                docker::restart(&service)?;
                format!("restarted {service}")
            }
            Attempt::ImageArchive {
                service,
                image,
                path,
            } => {
                let archive = docker::image_archive(&service, &image, &path)?;
                format!("read an archive of {} bytes", archive.len())
            }
            Attempt::Exec { service, command } => {
                let out = docker::exec(&service, &command)?;
                let tail = out.stdout.len().saturating_sub(200);
                let tail = out.stdout.get(tail..).unwrap_or_default();
                format!(
                    "exec exited {}: {} bytes of stdout, ending {:?}",
                    out.exit_code,
                    out.stdout.len(),
                    tail.trim_start_matches('\0')
                )
            }
            Attempt::StartReplacements { service, count } => {
                for i in 0..count {
                    if let Err(e) = docker::start_replacement(&service) {
                        return Err(format!("started {i} of {count} replacements, then: {e}"));
                    }
                }
                format!("started {count} replacements")
            }
            Attempt::Signal { service, signal } => {
                docker::signal(&service, &signal)?;
                format!("sent {signal:?} to {service}")
            }
            Attempt::Refuse { write } => {
                if let Some(path) = write {
                    std::fs::write(&path, b"half a release")
                        .map_err(|e| format!("write {path}: {e}"))?;
                }
                return Err(slipway_sdk::refuse("the hostile fixture refuses"));
            }
            Attempt::ReadOutput { key } => format!("output {key} = {:?}", ctx.output(&key)),
            Attempt::Outputs { keys } => {
                let report = keys.iter().fold(Report::new("outputs"), |r, k| {
                    r.with_output(k.clone(), "hostile")
                });
                return Ok(report);
            }
            Attempt::FilesHash { paths } => {
                let digests = slipway_sdk::files::hash(&paths)?;
                format!("hashed {}", digests.join(","))
            }
            Attempt::Tcp { host, port } => {
                probe::tcp_connect(&host, port, 2000)?;
                format!("connected to {host}:{port}")
            }
            Attempt::Http { url } => {
                let resp = probe::http_get(&url, 2000)?;
                format!("GET {url}: {}", resp.status)
            }
            Attempt::Resolve { host } => format!("resolved {:?}", probe::resolve(&host)?),
            Attempt::Env => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                format!("env has {} vars: {}", vars.len(), vars.join(","))
            }
            Attempt::Stderr { text } => {
                let _ = writeln!(std::io::stderr(), "{text}");
                "wrote to stderr".to_owned()
            }
            Attempt::StateRoundTrip { key, value } => {
                let before = state::get(&key);
                if let Err(e) = state::set(&key, &value) {
                    return Err(format!("state.set refused: {e}"));
                }
                format!("before={before:?} after={:?}", state::get(&key))
            }
            Attempt::Spin => spin(),
            Attempt::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Attempt::Panic => panic!("hostile plugin panicked on purpose"),
            Attempt::Flood { mb, via_log } => {
                let line = "x".repeat(1023);
                let mut stderr = std::io::stderr();
                for _ in 0..mb * 1024 {
                    if via_log {
                        slipway_sdk::info!("{line}");
                    } else if writeln!(stderr, "{line}").is_err() {
                        return Err("stderr refused a write".into());
                    }
                }
                format!("wrote {mb} MiB")
            }
            Attempt::BigReport { kb } => {
                let value = "y".repeat(1024);
                let mut report = Report::new(format!("{kb} KiB of outputs"));
                for i in 0..kb {
                    report = report.with_output(format!("k{i}"), value.clone());
                }
                return Ok(report);
            }
            Attempt::Symlink { target, link } => {
                symlink(&target, &link).map_err(|e| format!("symlink {link} -> {target}: {e}"))?;
                format!("linked {link} -> {target}")
            }
            Attempt::FillDisk { dir } => return fill_disk(&dir),
            Attempt::StateKeys { count, value_bytes } => {
                let value = "v".repeat(value_bytes);
                for i in 0..count {
                    if let Err(e) = state::set(&format!("key-{i}"), &value) {
                        return Err(format!("stored {i} of {count} keys, then: {e}"));
                    }
                }
                format!("stored {count} keys")
            }
            Attempt::Recurse { depth, in_memory } => {
                let sum = match in_memory {
                    false => recurse(depth),
                    true => recurse_in_memory(depth),
                };
                format!("recursed {depth} deep: {sum}")
            }
        };
        Ok(Report::new(summary))
    }

    /// `apply` reports what the host let it do; the tests judge that, so
    /// there is nothing here to prove.
    fn verify(ctx: Context) -> Result<Report, String> {
        Ok(Report::new(format!(
            "the hostile fixture has nothing to verify for step {} of surface {}: its apply reports what the host allowed",
            ctx.step, ctx.surface
        )))
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// `symlink(2)` as wasi-libc implements it, over the preopens: std's
/// `symlink_path` is unstable on WASI, and this keeps the fixture free of a
/// WASI bindings crate.
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    use std::ffi::{CString, c_char, c_int};
    unsafe extern "C" {
        #[link_name = "symlink"]
        fn libc_symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let nul = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let (target, link) = (nul(target)?, nul(link)?);
    // SAFETY: both are NUL-terminated strings that outlive the call.
    match unsafe { libc_symlink(target.as_ptr(), link.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Fill `dir` with 1 MiB files until a write fails, and report that error
/// with how much was written: the test needs to see the plugin got it.
fn fill_disk(dir: &str) -> Result<Report, String> {
    let chunk = vec![0x5a_u8; 1 << 20];
    for n in 0.. {
        let path = format!("{dir}/fill-{n}");
        if let Err(e) = std::fs::write(&path, &chunk) {
            return Err(format!("wrote {n} MiB into {dir}, then {path}: {e}"));
        }
    }
    unreachable!("a disk without end")
}

/// Each call keeps `depth` live across the next, so the compiler can turn it
/// into neither a loop nor a constant.
fn recurse(depth: u32) -> u64 {
    if depth == 0 {
        return 0;
    }
    recurse(std::hint::black_box(depth - 1)) + u64::from(std::hint::black_box(depth))
}

/// [`recurse`] with a 1 KiB buffer on every frame, whose address escapes,
/// so it lives on the stack in linear memory.
fn recurse_in_memory(depth: u32) -> u64 {
    if depth == 0 {
        return 0;
    }
    let frame = [depth as u8; 1024];
    let below = recurse_in_memory(std::hint::black_box(depth - 1));
    below + u64::from(std::hint::black_box(&frame)[1023])
}

slipway_sdk::export_step!(Hostile);
