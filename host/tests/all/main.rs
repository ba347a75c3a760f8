//! End-to-end tests: real plugins, a real Docker engine, real nginx.
//! `scripts/test` sets the machine up and builds the plugins first.

mod astro;
mod bridge;
mod browser;
mod caps;
mod ci_report;
mod cli;
mod compose_corpus;
mod converge;
mod faults;
mod frontend;
mod harness;
mod interop;
mod journal;
mod kills;
mod miniapp;
mod nginx;
mod pull;
mod pwa;
mod python;
mod remote;
mod rule1;
mod rule2;
mod sandbox;
mod scaffold;
mod seed;
mod site_scale;
mod surface_build;
mod swarm;
mod swarm_site;
mod watch;
