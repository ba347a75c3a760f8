//! A plugin that fuzzes the host: from `seed`, it makes `calls` calls to the
//! host's imports (docker, probe, log, state, files), each with arguments
//! drawn from what breaks parsers and path checks: empty and huge strings,
//! NUL bytes, `..`, lookalike prefixes, odd Unicode, long lists. Every call
//! must come back as `ok` or `err`; the host must not trap, panic, hang or
//! reach past the grants. The summary counts the answers.

use serde::Deserialize;
use slipway_sdk::bindings::step_world::slipway::plugin::{docker, files, log, probe, state};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step};

struct ImportFuzzer;

#[derive(Deserialize)]
struct Config {
    seed: u64,
    calls: u32,
    /// Names the grants use, so that calls reach past the first check.
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    dirs: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

/// Draws arguments.
struct Draw {
    rng: fastrand::Rng,
    config: Config,
}

const ODD: &[&str] = &[
    "",
    "/",
    "//",
    ".",
    "..",
    "../..",
    "/..",
    "\0",
    "a\0b",
    "/etc/passwd",
    "/proc/self/fd/0",
    "*",
    "%",
    "${HOME}",
    "\u{202e}",
    "é",
    "\u{feff}",
    "🦀",
    " ",
    "\n",
    "\\",
    "C:\\",
    "sha256:",
    "http://",
    "http://[::1]:80/",
    "http://127.0.0.1:0/",
    "ftp://x/",
    "SIGKILL",
    "SIGHUP",
    "-1",
    "99999",
    "nginx",
    "API",
    "api ",
    "-t",
];

impl Draw {
    fn string(&mut self) -> String {
        match self.rng.u8(..10) {
            0 => String::new(),
            1 => ODD[self.rng.usize(..ODD.len())].to_owned(),
            2 => "x".repeat(self.rng.usize(..(1 << 20))),
            3 => (0..self.rng.usize(..64))
                .map(|_| char::from_u32(self.rng.u32(..0x11_0000)).unwrap_or('\u{fffd}'))
                .collect(),
            4 | 5 => self.path(),
            6 => self.pick(&self.config.services.clone()),
            7 => format!(
                "http://{}/{}",
                self.pick(&self.config.hosts.clone()),
                self.path()
            ),
            _ => format!(
                "{}{}",
                self.pick(&self.config.services.clone()),
                ODD[self.rng.usize(..ODD.len())]
            ),
        }
    }

    /// A path near the grants: inside, outside, climbing, or a lookalike.
    fn path(&mut self) -> String {
        let dir = self.pick(&self.config.dirs.clone());
        let tail = match self.rng.u8(..6) {
            0 => String::new(),
            1 => "/../..".to_owned(),
            2 => "-lookalike/x".to_owned(),
            3 => format!("/{}", self.rng.u32(..100)),
            4 => format!("/a/b/{}/c", ODD[self.rng.usize(..ODD.len())]),
            _ => "/.//./x".to_owned(),
        };
        format!("{dir}{tail}")
    }

    fn pick(&mut self, from: &[String]) -> String {
        match from.is_empty() || self.rng.u8(..5) == 0 {
            true => ODD[self.rng.usize(..ODD.len())].to_owned(),
            false => from[self.rng.usize(..from.len())].clone(),
        }
    }

    fn strings(&mut self) -> Vec<String> {
        let n = match self.rng.u8(..8) {
            0 => self.rng.usize(..2000),
            _ => self.rng.usize(..4),
        };
        (0..n).map(|_| self.path()).collect()
    }

    fn pairs(&mut self) -> Vec<(String, String)> {
        let n = self.rng.usize(..6);
        (0..n).map(|_| (self.path(), self.path())).collect()
    }

    /// One call to one import. `Ok` and `Err` both count as an answer.
    fn call(&mut self) -> Result<(), String> {
        match self.rng.u8(..22) {
            0 => docker::inspect(&self.string()).map(drop),
            1 => docker::build(&self.string()).map(drop),
            2 => docker::recreate(&self.string()).map(drop),
            3 => docker::start_replacement(&self.string()).map(drop),
            4 => docker::retire(&self.string(), &self.string()),
            5 => docker::discard(&self.string(), &self.string()),
            6 => docker::restart(&self.string()),
            7 => docker::signal(&self.string(), &self.string()),
            8 => docker::exec(&self.string(), &self.strings()).map(drop),
            9 => docker::wait_ready(&self.string(), self.rng.u32(..50)),
            10 => docker::image_archive(&self.string(), &self.string(), &self.string()).map(drop),
            11 => probe::http_get(&self.string(), self.rng.u32(..50)).map(drop),
            12 => probe::http_post(&self.string(), self.string().as_bytes(), self.rng.u32(..50))
                .map(drop),
            13 => probe::tcp_connect(&self.string(), self.rng.u16(..), self.rng.u32(..50)),
            14 => probe::resolve(&self.string()).map(drop),
            15 => {
                let level = [
                    log::Level::Debug,
                    log::Level::Info,
                    log::Level::Warn,
                    log::Level::Error,
                ];
                log::log(level[self.rng.usize(..4)], &self.string());
                Ok(())
            }
            16 => {
                let key = self.string();
                state::set(&key, &self.string())?;
                state::get(&key);
                Ok(())
            }
            17 => {
                state::delete(&self.string());
                Ok(())
            }
            18 => files::scan(&self.path()).map(drop),
            19 => files::hash(&self.strings()).map(drop),
            20 => files::copy(&self.pairs()).map(drop),
            _ => files::link(&self.pairs()),
        }
    }
}

impl Plugin for ImportFuzzer {
    fn describe() -> PluginInfo {
        slipway_sdk::plugin_info!(
            needs: ["whatever the test grants"],
            exec: [["true"], ["nginx", "-t"]]
        )
    }
}

impl Step for ImportFuzzer {
    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let calls = config.calls;
        let mut draw = Draw {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
        };
        let (mut ok, mut err) = (0u32, 0u32);
        for _ in 0..calls {
            match draw.call() {
                Ok(()) => ok += 1,
                Err(_) => err += 1,
            }
        }
        Ok(Report::new(format!("{ok} ok, {err} err")))
    }

    fn verify(_: Context) -> Result<Report, String> {
        Ok(Report::new("a test fixture: nothing to verify"))
    }
}

slipway_sdk::export_step!(ImportFuzzer);
