//! Test fixture: a plugin that tries, on request, everything a plugin must not
//! be able to do. The step config picks the attempt; `apply` reports what
//! happened so tests can assert the host refused it.

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
}

impl Plugin for Hostile {
    fn describe() -> PluginInfo {
        // It declares a shell and nginx's own commands: tests prove that a
        // narrowed grant still refuses the shell.
        slipway_sdk::plugin_info!(
            needs: ["whatever the test grants"],
            exec: [["sh"], ["nginx"], ["cat"], ["true"]]
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
                format!("exec exited {}: {}", out.exit_code, out.stdout.trim())
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
            Attempt::Spin => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
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

slipway_sdk::export_step!(Hostile);
