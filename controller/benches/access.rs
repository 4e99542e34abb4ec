//! The cost of the permission decision per request, with the bindings
//! cached: 1,000 projects and 10,000 bindings (members of projects by
//! user, group and client, and global roles), as `crate::access` holds
//! them in memory. No database or HTTP: this is what a request pays on
//! top of checking its token. Target: under 50 µs per decision.
//!
//!     cargo bench -p ick-controller --bench access
//!
//! Each figure is the mean over many decisions of one kind, cycling over
//! the projects; a request makes one (a list: one `readable`).

use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ick_api::ScopeSet;
use ick_api::auth::Caller;
use ick_api::controller::{GlobalRole, Member, ProjectRole, Visibility};
use ick_api::oauth::UserIdentity;
use ick_controller::access::{Bindings, Identity};

const PROJECTS: usize = 1_000;
const BINDINGS: usize = 10_000;
const ROUNDS: usize = 200_000;

fn bindings() -> Bindings {
    let projects: Vec<(String, Visibility)> = (0..PROJECTS)
        .map(|i| {
            let visibility = match i % 3 {
                0 => Visibility::Private,
                1 => Visibility::Internal,
                _ => Visibility::Public,
            };
            (format!("project-{i:04}"), visibility)
        })
        .collect();
    let roles = ProjectRole::ALL;
    let mut members = Vec::with_capacity(BINDINGS);
    for i in 0..BINDINGS - 20 {
        let project = format!("project-{:04}", i % PROJECTS);
        let member = match i % 4 {
            0 | 1 => Member::User(format!("user-{}", i % 2_000)),
            2 => Member::Group(format!("group-{}", i % 300)),
            _ => Member::Client(format!("client-{}", i % 500)),
        };
        members.push((project, member, roles[i % roles.len()]));
    }
    let global = (0..20).map(|i| {
        (
            Member::Group(format!("group-{}", 1_000 + i)),
            if i % 2 == 0 {
                GlobalRole::Admin
            } else {
                GlobalRole::Creator
            },
        )
    });
    Bindings::new(
        &[Member::Client("ick-admin".into())],
        global,
        projects,
        members,
    )
}

fn caller(user: Option<UserIdentity>, client: &str) -> Caller {
    Caller {
        subject: "7d4c6f0e-0000-4000-8000-000000000000".into(),
        client_id: "7d4c6f0e-0000-4000-8000-000000000000".into(),
        client_name: Some(client.into()),
        scopes: ScopeSet::all(),
        expires_at: 0,
        worker: None,
        user,
    }
}

/// Mean time per call of `decide` over `ROUNDS` calls.
fn time(what: &str, mut decide: impl FnMut(usize) -> bool) -> Duration {
    // Warm up the caches of the CPU, as a serving controller's are.
    for i in 0..ROUNDS / 10 {
        black_box(decide(i));
    }
    let started = Instant::now();
    let mut allowed = 0usize;
    for i in 0..ROUNDS {
        allowed += usize::from(black_box(decide(i)));
    }
    let per = started.elapsed() / ROUNDS as u32;
    println!(
        "{what:<58} {:>8.3} µs  ({allowed} of {ROUNDS} allowed)",
        per.as_secs_f64() * 1e6
    );
    per
}

fn main() {
    let started = Instant::now();
    let cache = RwLock::new(Arc::new(bindings()));
    println!(
        "{PROJECTS} projects, {BINDINGS} bindings, built in {:?}\n",
        started.elapsed()
    );
    let names: Vec<String> = (0..PROJECTS).map(|i| format!("project-{i:04}")).collect();
    let person = caller(
        Some(UserIdentity {
            name: "user-17".into(),
            groups: (0..8).map(|g| format!("group-{}", g * 37)).collect(),
        }),
        "icktool",
    );
    let machine = caller(None, "client-43");
    let admin = caller(
        Some(UserIdentity {
            name: "root".into(),
            groups: vec!["group-1000".into()],
        }),
        "web",
    );
    // What a request does: take the cached bindings (a read lock and an
    // Arc clone), see who the caller is, decide.
    let decide = |caller: &Caller, project: &str, need: ProjectRole| {
        let bindings = cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        let who = Identity::of(Some(caller));
        bindings.decide(&who, project, need) == ick_controller::access::Decision::Allowed
    };
    let mut worst = Duration::ZERO;
    for (what, caller, need) in [
        (
            "a person with 8 groups reads a project",
            &person,
            ProjectRole::Viewer,
        ),
        (
            "a person with 8 groups triggers (developer)",
            &person,
            ProjectRole::Developer,
        ),
        (
            "a client changes a definition (maintainer)",
            &machine,
            ProjectRole::Maintainer,
        ),
        (
            "an admin (by a group) deletes a project (owner)",
            &admin,
            ProjectRole::Owner,
        ),
    ] {
        worst = worst.max(time(what, |i| decide(caller, &names[i % PROJECTS], need)));
    }
    let anonymous = |i: usize| {
        let bindings = cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        bindings.decide(
            &Identity::Anonymous,
            &names[i % PROJECTS],
            ProjectRole::Viewer,
        ) == ick_controller::access::Decision::Allowed
    };
    worst = worst.max(time("no token reads a project (public only)", anonymous));
    let shared: Vec<String> = names.iter().take(5).cloned().collect();
    worst = worst.max(time("a client changes a pipeline 5 projects run", |_| {
        let bindings = cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        bindings
            .may_change_pipeline(&Identity::of(Some(&machine)), &shared)
            .is_ok()
    }));
    println!();
    // A listing decides for every project at once.
    let started = Instant::now();
    let lists = 1_000;
    let mut seen = 0;
    for _ in 0..lists {
        let bindings = cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        seen += black_box(bindings.readable(&Identity::of(Some(&person))))
            .map_or(PROJECTS, |l| l.len());
    }
    println!(
        "{:<58} {:>8.3} µs  ({} projects readable)",
        "the projects a person may read, for a list (all 1,000)",
        (started.elapsed() / lists).as_secs_f64() * 1e6,
        seen / lists as usize
    );
    println!(
        "\nworst decision: {:.3} µs per request (target < 50 µs): {}",
        worst.as_secs_f64() * 1e6,
        if worst < Duration::from_micros(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}
