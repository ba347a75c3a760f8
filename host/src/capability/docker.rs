//! The `docker` import: compose services named in `grants.docker`, and
//! `exec` only of commands the plugin declares and the grant allows.

use super::Sandbox;
use super::command::{ExecCommand, command_list};
use super::{Denied, Mode, host_err};
use crate::bindings::slipway::plugin::docker;
use crate::docker::{ContainerInfo, Docker, Exec};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

/// `image-archive`'s cap: the archive crosses into the plugin's memory.
const MAX_ARCHIVE_BYTES: usize = 256 << 20;

/// `grants.docker` of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerGrant {
    pub services: Vec<ServiceGrant>,
}

/// One granted service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGrant {
    pub service: String,
    /// `None`: any command the plugin declares. `Some`: only these.
    pub exec: Option<Vec<ExecCommand>>,
}

impl DockerGrant {
    /// Every operation on each of `services`, exec of any declared command.
    pub fn services<S: Into<String>>(services: impl IntoIterator<Item = S>) -> DockerGrant {
        DockerGrant {
            services: services
                .into_iter()
                .map(|s| ServiceGrant {
                    service: s.into(),
                    exec: None,
                })
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|g| g.service.as_str())
    }

    fn service(&self, op: Op, service: &str) -> Result<&ServiceGrant, Denied> {
        self.services
            .iter()
            .find(|g| g.service == service)
            .ok_or_else(|| {
                Denied(format!(
                    "docker {} of service `{service}` is not granted; add \"{service}\" to this step's grants.docker in slipway.toml",
                    op.name()
                ))
            })
    }

    /// `op` on `service`: granted, and during a plan only if it changes
    /// nothing.
    pub fn check(&self, mode: Mode, op: Op, service: &str) -> Result<(), Denied> {
        self.service(op, service)?;
        if op.mutates() {
            mode.allow_change(format_args!("docker {} of service `{service}`", op.name()))?;
        }
        Ok(())
    }

    /// `exec` of `argv` in `service`: granted, one of the commands the
    /// plugin declares (`declared`, from its `describe`), and where the
    /// grant narrows exec, one of its commands. Commands match whole (see
    /// [`ExecCommand`]); a `{service}` in them is a service of this grant.
    pub fn check_exec(
        &self,
        mode: Mode,
        declared: &[ExecCommand],
        service: &str,
        argv: &[String],
    ) -> Result<(), Denied> {
        self.check(mode, Op::Exec, service)?;
        let services: Vec<&str> = self.names().collect();
        let is = |c: &ExecCommand| c.matches(argv, &services);
        if !declared.iter().any(is) {
            return Err(Denied(format!(
                "exec of {argv:?} in service `{service}` is refused: it is not one of the commands the plugin declares \
                 ([{}]; a command matches whole, every argument); a plugin runs only the commands it declares",
                command_list(declared)
            )));
        }
        match &self.service(Op::Exec, service)?.exec {
            Some(granted) if !granted.iter().any(is) => Err(Denied(format!(
                "exec of {argv:?} in service `{service}` is not granted: grants.docker narrows its exec to [{}]; \
                 add the command to that `exec` list in slipway.toml if the step really needs it",
                command_list(granted)
            ))),
            _ => Ok(()),
        }
    }
}

/// Docker operations, split by whether they change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Inspect,
    WaitReady,
    Build,
    Recreate,
    StartReplacement,
    Retire,
    Discard,
    Restart,
    Signal,
    Exec,
    Archive,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Inspect => "inspect",
            Op::WaitReady => "wait-ready",
            Op::Build => "build",
            Op::Recreate => "recreate",
            Op::StartReplacement => "start-replacement",
            Op::Retire => "retire",
            Op::Discard => "discard",
            Op::Restart => "restart",
            Op::Signal => "signal",
            Op::Exec => "exec",
            Op::Archive => "image-archive",
        }
    }

    /// Exec counts: the host cannot tell `nginx -T` from a write.
    pub fn mutates(self) -> bool {
        !matches!(self, Op::Inspect | Op::WaitReady)
    }

    /// `Err` for an op that builds or replaces containers: on a swarm the
    /// deploy has built, pushed and pinned every image before the steps
    /// run, and Swarm alone replaces a service's tasks.
    pub fn on_swarm(self, service: &str) -> Result<(), Denied> {
        match self {
            Op::Build
            | Op::Recreate
            | Op::StartReplacement
            | Op::Retire
            | Op::Discard
            | Op::Restart => Err(Denied(format!(
                "docker {} of service `{service}` does not run on a swarm: Swarm replaces a service's tasks \
                 itself, by its deploy.update_config, after slipway has built, pushed and pinned the image; \
                 a step there reads, waits for, signals and execs in services",
                self.name()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the op can give the service's containers new addresses.
    pub fn moves(self) -> bool {
        matches!(
            self,
            Op::Recreate | Op::StartReplacement | Op::Retire | Op::Discard | Op::Restart
        )
    }
}

/// What a call did to containers through this import, as the host saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// A call that changes containers or images was let through. `exec` is
    /// not counted: a strategy reads its config through it (`nginx -T`)
    /// before it may refuse. Nor is `image-archive`: its container is
    /// created only to be read and is gone when the call returns.
    pub mutated: bool,
    /// Services whose containers the plugin replaced, started, stopped or
    /// restarted: their addresses may have changed, so whatever routes to
    /// them must resolve them again.
    pub moved: Vec<String>,
    /// What the call wrote in its granted directories (not through this
    /// import, but it changes what users may be served all the same).
    pub wrote: Option<String>,
}

impl Effects {
    fn record(&mut self, op: Op, service: &str) {
        if op.mutates() && !matches!(op, Op::Exec | Op::Archive) {
            self.mutated = true;
        }
        if op.moves() && !self.moved.iter().any(|s| s == service) {
            self.moved.push(service.to_owned());
        }
    }
}

/// The import's state during one call.
pub struct DockerCtx {
    grant: DockerGrant,
    mode: Mode,
    /// The commands the plugin declares.
    declared: Vec<ExecCommand>,
    engine: Option<Arc<Docker>>,
    pub(crate) effects: Effects,
    /// Per service, the replacement this call started and has not yet
    /// retired the others for, nor discarded: one at a time.
    replacing: HashMap<String, String>,
    /// The exec this call is running, if any.
    running: Option<Exec>,
}

impl DockerCtx {
    pub fn new(
        grant: DockerGrant,
        mode: Mode,
        declared: Vec<ExecCommand>,
        engine: Option<Arc<Docker>>,
    ) -> DockerCtx {
        DockerCtx {
            grant,
            mode,
            declared,
            engine,
            effects: Effects::default(),
            replacing: HashMap::new(),
            running: None,
        }
    }

    fn engine(&mut self, op: Op, service: &str) -> Result<Arc<Docker>, String> {
        self.grant.check(self.mode, op, service)?;
        let engine = self
            .engine
            .clone()
            .ok_or_else(|| "no Docker engine is connected to this run".to_owned())?;
        if engine.on_swarm() {
            op.on_swarm(service)?;
        }
        self.effects.record(op, service);
        Ok(engine)
    }

    /// Kill the execs of a call that was stopped (at its timeout) while
    /// they ran: the command would otherwise run on in the container.
    pub async fn kill_unfinished(&mut self) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let Some(exec) = self.running.take() else {
            return;
        };
        match engine.kill_exec(&exec).await {
            Ok(true) => tracing::warn!("killed {exec}, which ran on past its plugin's timeout"),
            Ok(false) => {}
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    docker::add_to_linker::<_, HasSelf<DockerCtx>>(linker, |s| &mut s.docker)
}

impl From<ContainerInfo> for docker::Container {
    fn from(c: ContainerInfo) -> Self {
        docker::Container {
            id: c.id,
            name: c.name,
            service: c.service,
            image_id: c.image_id,
            state: c.state,
            health: c.health,
            networks: c
                .networks
                .into_iter()
                .map(|n| docker::NetworkAttachment {
                    network: n.network,
                    ip_address: n.ip_address,
                    aliases: n.aliases,
                })
                .collect(),
        }
    }
}

impl docker::Host for DockerCtx {
    async fn inspect(&mut self, service: String) -> Result<Vec<docker::Container>, String> {
        let d = self.engine(Op::Inspect, &service)?;
        let containers = d.containers(&service).await.map_err(host_err)?;
        Ok(containers.into_iter().map(Into::into).collect())
    }

    async fn build(&mut self, service: String) -> Result<String, String> {
        let d = self.engine(Op::Build, &service)?;
        let task = crate::progress::start(format!("build {service}"));
        let built = d.build(std::slice::from_ref(&service), &task).await;
        task.end(built.is_ok());
        built.map(|b| b.image_id).map_err(host_err)
    }

    async fn recreate(&mut self, service: String) -> Result<docker::Container, String> {
        let d = self.engine(Op::Recreate, &service)?;
        let recreated = d.recreate(&service).await.map_err(host_err)?;
        // Every other container of the service is gone with the recreate.
        self.replacing.remove(&service);
        Ok(recreated.into())
    }

    /// One replacement per service at a time: a second one before the
    /// first is retired into or discarded is refused, so that a plugin
    /// cannot run the service many times over.
    async fn start_replacement(&mut self, service: String) -> Result<docker::Container, String> {
        let d = self.engine(Op::StartReplacement, &service)?;
        if let Some(first) = self.replacing.get(&service) {
            return Err(format!(
                "docker start-replacement of service `{service}` is refused: this step's replacement {} is still \
                 starting beside the old container; retire the others (docker.retire) or discard it (docker.discard) \
                 before starting another",
                crate::text::short_id(first)
            ));
        }
        let started = d.start_replacement(&service).await.map_err(host_err)?;
        self.replacing.insert(service, started.id.clone());
        Ok(started.into())
    }

    async fn retire(&mut self, service: String, keep: String) -> Result<(), String> {
        let d = self.engine(Op::Retire, &service)?;
        d.retire(&service, &keep).await.map_err(host_err)?;
        self.replacing.remove(&service);
        Ok(())
    }

    async fn discard(&mut self, service: String, container: String) -> Result<(), String> {
        let d = self.engine(Op::Discard, &service)?;
        d.discard(&service, &container).await.map_err(host_err)?;
        if self
            .replacing
            .get(&service)
            .is_some_and(|id| id.starts_with(&container))
        {
            self.replacing.remove(&service);
        }
        Ok(())
    }

    async fn restart(&mut self, service: String) -> Result<(), String> {
        let d = self.engine(Op::Restart, &service)?;
        d.restart(&service).await.map_err(host_err)
    }

    async fn signal(&mut self, service: String, signal: String) -> Result<(), String> {
        let d = self.engine(Op::Signal, &service)?;
        let signal = signal_name(&signal)?;
        d.signal(&service, &signal).await.map_err(host_err)
    }

    async fn exec(
        &mut self,
        service: String,
        command: Vec<String>,
    ) -> Result<docker::ExecOutput, String> {
        self.grant
            .check_exec(self.mode, &self.declared, &service, &command)?;
        let d = self.engine(Op::Exec, &service)?;
        let exec = d.create_exec(&service, &command).await.map_err(host_err)?;
        self.running = Some(exec.clone());
        let out = d.run_exec(&exec).await;
        self.running = None;
        let out = out.map_err(host_err)?;
        Ok(docker::ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn image_archive(
        &mut self,
        service: String,
        image: String,
        path: String,
    ) -> Result<Vec<u8>, String> {
        let d = self.engine(Op::Archive, &service)?;
        d.image_archive(&service, &image, &path, MAX_ARCHIVE_BYTES)
            .await
            .map_err(host_err)
    }

    async fn wait_ready(&mut self, service: String, timeout_ms: u32) -> Result<(), String> {
        let d = self.engine(Op::WaitReady, &service)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        d.wait_ready(&service, timeout, Duration::ZERO)
            .await
            .map_err(host_err)
    }
}

/// The signals a plugin may send, as Linux names them.
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// `signal` as the engine is sent it: a name (`SIGHUP`, `hup`) or a number
/// of a Linux signal. Anything else is refused: the engine reads an empty
/// signal as SIGKILL and an unknown one as an error of its own.
fn signal_name(signal: &str) -> Result<String, String> {
    let upper = signal.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let known = match bare.parse::<usize>() {
        Ok(n) => (1..=SIGNALS.len()).contains(&n).then(|| SIGNALS[n - 1]),
        Err(_) => SIGNALS.iter().copied().find(|s| *s == bare),
    };
    known
        .map(|s| format!("SIG{s}"))
        .ok_or_else(|| format!("`{signal}` is not a signal; name one, e.g. SIGHUP or SIGUSR1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_a_linux_signal_by_name_or_number_and_nothing_else() {
        assert_eq!(signal_name("SIGHUP").unwrap(), "SIGHUP");
        assert_eq!(signal_name("usr1").unwrap(), "SIGUSR1");
        assert_eq!(signal_name("15").unwrap(), "SIGTERM");
        assert_eq!(signal_name("SIG28").unwrap(), "SIGWINCH");
        for bad in ["", " ", "SIG", "0", "32", "SIGRTMIN", "HUP;KILL", "-9"] {
            assert!(signal_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const ALL: [Op; 11] = [
        Op::Inspect,
        Op::WaitReady,
        Op::Build,
        Op::Recreate,
        Op::StartReplacement,
        Op::Retire,
        Op::Discard,
        Op::Restart,
        Op::Signal,
        Op::Exec,
        Op::Archive,
    ];

    #[test]
    fn nothing_is_granted_by_default() {
        for op in ALL {
            assert!(
                DockerGrant::default()
                    .check(Mode::Apply, op, "api")
                    .is_err()
            );
        }
    }

    /// (mode, op, service, allowed) against a grant of nginx and api.
    #[test]
    fn grant_table() {
        let g = DockerGrant::services(["nginx", "api"]);
        let cases = [
            (Mode::Apply, Op::Inspect, "api", true),
            (Mode::Apply, Op::Exec, "nginx", true),
            (Mode::Apply, Op::Recreate, "api", true),
            (Mode::Apply, Op::Inspect, "postgres", false),
            (Mode::Apply, Op::Restart, "API", false),
            (Mode::Apply, Op::Exec, "", false),
            (Mode::Apply, Op::Exec, "nginx ", false),
            (Mode::Plan, Op::Inspect, "api", true),
            (Mode::Plan, Op::WaitReady, "api", true),
            (Mode::Plan, Op::Inspect, "postgres", false),
        ];
        for (mode, op, svc, ok) in cases {
            assert_eq!(
                g.check(mode, op, svc).is_ok(),
                ok,
                "{mode:?} {op:?} {svc:?}"
            );
        }
        for op in ALL.into_iter().filter(|op| op.mutates()) {
            let msg = g.check(Mode::Plan, op, "api").unwrap_err().0;
            assert!(msg.contains("slipway plan"), "{msg}");
        }
        let msg = g.check(Mode::Apply, Op::Restart, "postgres").unwrap_err().0;
        assert!(
            msg.contains("grants.docker") && msg.contains("postgres"),
            "{msg}"
        );
    }

    fn commands(list: &[&[&str]]) -> Vec<ExecCommand> {
        list.iter()
            .map(|a| ExecCommand::parse(&argv(a)).unwrap())
            .collect()
    }

    /// Exec runs only what the plugin declares and, where the grant narrows
    /// it, what the grant lists: whole commands, never prefixes.
    #[test]
    fn exec_table() {
        let declared = commands(&[
            &["nginx", "-t"],
            &["nginx", "-s", "reload"],
            &["nginx", "-s", "stop"],
            &["sh", "-c", "id"],
            &["nslookup", "{service}"],
        ]);
        let mut g = DockerGrant::services(["nginx", "api"]);
        g.services[0].exec = Some(commands(&[
            &["nginx", "-t"],
            &["nginx", "-s", "reload"],
            &["nslookup", "{service}"],
        ]));
        let cases: [(&str, &[&str], bool); 14] = [
            ("nginx", &["nginx", "-t"], true),
            ("nginx", &["nginx", "-s", "reload"], true),
            ("nginx", &["nslookup", "api"], true),
            ("nginx", &["nginx", "-s", "stop"], false),
            ("nginx", &["nginx", "-s", "reload", "-s", "stop"], false),
            (
                "nginx",
                &["nginx", "-t", "-g", "load_module /srv/x.so;"],
                false,
            ),
            ("nginx", &["nginx"], false),
            ("nginx", &["nslookup", "postgres"], false),
            ("nginx", &["nslookup", "api", "10.0.0.1"], false),
            ("nginx", &["sh", "-c", "id"], false),
            ("nginx", &[], false),
            ("api", &["sh", "-c", "id"], true),
            ("api", &["sh", "-c", "wget -qO- http://nginx/"], false),
            ("postgres", &["nginx", "-t"], false),
        ];
        for (service, command, ok) in cases {
            let got = g.check_exec(Mode::Apply, &declared, service, &argv(command));
            assert_eq!(got.is_ok(), ok, "{service} {command:?}: {got:?}");
        }
        let shell = argv(&["sh", "-c", "id"]);
        let msg = g
            .check_exec(Mode::Apply, &declared, "nginx", &shell)
            .unwrap_err()
            .0;
        assert!(
            msg.contains("grants.docker") && msg.contains("\"nginx\", \"-t\""),
            "{msg}"
        );
        let python = argv(&["python"]);
        let msg = g
            .check_exec(Mode::Apply, &declared, "api", &python)
            .unwrap_err()
            .0;
        assert!(
            msg.contains("not one of the commands the plugin declares")
                && msg.contains(r#"["nslookup", "{service}"]"#),
            "{msg}"
        );
        let msg = g
            .check_exec(Mode::Apply, &[], "api", &python)
            .unwrap_err()
            .0;
        assert!(msg.contains("declares ([]"), "{msg}");
        let test = argv(&["nginx", "-t"]);
        let msg = g
            .check_exec(Mode::Plan, &declared, "nginx", &test)
            .unwrap_err()
            .0;
        assert!(msg.contains("slipway plan"), "{msg}");
    }

    /// On a swarm a step may not build or replace: those are the deploy's
    /// and Swarm's.
    #[test]
    fn a_swarm_refuses_every_op_that_builds_or_replaces() {
        for op in ALL {
            let allowed = op.on_swarm("api").map_err(|d| d.0);
            match op.moves() || op == Op::Build {
                true => {
                    let msg = allowed.unwrap_err();
                    assert!(
                        msg.contains(op.name()) && msg.contains("update_config"),
                        "{msg}"
                    );
                }
                false => assert!(allowed.is_ok(), "{op:?}"),
            }
        }
    }

    #[test]
    fn effects_count_container_changes_and_the_services_that_moved() {
        let mut e = Effects::default();
        for op in [Op::Inspect, Op::WaitReady, Op::Exec, Op::Archive] {
            e.record(op, "nginx");
        }
        assert_eq!(
            e,
            Effects::default(),
            "reads, exec and archives change no container"
        );
        e.record(Op::Recreate, "api");
        e.record(Op::Retire, "api");
        e.record(Op::Signal, "bot");
        assert!(e.mutated);
        assert_eq!(e.moved, ["api"], "a signal keeps the address; api once");
    }
}
