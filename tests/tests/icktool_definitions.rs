//! `icktool apply` and the project/pipeline commands against a real
//! controller (and IDP) on Postgres.

mod common;

use common::{Ick, definitions, s};
use ick_api::controller::{Applied, Change, Revision, StoredPipeline, StoredProject};
use ick_tests::repo_root;

fn pipelines(ick: &Ick) -> Vec<StoredPipeline> {
    ick.icktool(&["pipeline", "list", "--output", "json"])
        .ok()
        .json()
}

fn projects(ick: &Ick) -> Vec<StoredProject> {
    ick.icktool(&["project", "list", "--output", "json"])
        .ok()
        .json()
}

#[test]
fn apply_creates_then_reports_unchanged_then_updates() {
    let ick = Ick::start(0);
    let hello = repo_root().join("examples/hello");
    let first = ick.icktool(&["apply", "-f", s(&hello)]).ok();
    assert_eq!(
        first.stdout,
        "pipeline hello-build created (revision 1)\n\
         pipeline hello-check created (revision 1)\n\
         project hello created (revision 1)\n",
        "{first}"
    );
    let again: Vec<Applied> = ick
        .icktool(&["apply", "-f", s(&hello), "--output", "json"])
        .ok()
        .json();
    assert!(
        again
            .iter()
            .all(|a| a.change == Change::Unchanged && a.revision == 1),
        "{again:?}"
    );

    let changed = definitions(
        &ick,
        "hello.yaml",
        &std::fs::read_to_string(hello.join("hello.yaml"))
            .expect("example")
            .replace("{greeting: hello}", "{greeting: bonjour}"),
    );
    let third = ick.icktool(&["apply", "-f", s(&changed)]).ok();
    assert!(
        third.stdout.contains("project hello updated (revision 2)")
            && third.stdout.contains("pipeline hello-build unchanged"),
        "{third}"
    );

    let listed = projects(&ick);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "hello");
    assert_eq!(listed[0].spec.pipelines, ["hello-build", "hello-check"]);
    assert_eq!(listed[0].spec.parameters["greeting"], "bonjour");
    let table = ick.icktool(&["pipeline", "list"]).ok();
    let header = table.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("NEEDS"),
        "{table}"
    );
    assert!(table.stdout.contains("hello-check"), "{table}");

    let shown = ick.icktool(&["project", "show", "hello"]).ok();
    assert!(shown.stdout.contains("greeting: bonjour"), "{shown}");
    let yaml = ick
        .icktool(&["pipeline", "show", "hello-check", "--output", "yaml"])
        .ok();
    let stored: StoredPipeline = serde_yaml::from_str(&yaml.stdout).expect("yaml");
    assert_eq!(stored.spec.needs, ["hello-build"]);

    let revisions: Vec<Revision> = ick
        .icktool(&["project", "revisions", "hello", "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        revisions.iter().map(|r| r.revision).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(revisions[0].author, ick_tests::idp::ADMIN_CLIENT);
    let texts = ick
        .icktool(&["project", "revisions", "hello", "--text"])
        .ok();
    assert!(
        texts.stdout.contains("# revision 1") && texts.stdout.contains("greeting: hello"),
        "{texts}"
    );
}

#[test]
fn make_it_so_applies_an_original_ick_file() {
    let ick = Ick::start(0);
    let file = definitions(
        &ick,
        "rome.ick",
        "projects:\n  - project: rome\n    parameters: {foo: bar}\n    pipelines: [construct]\n\
         pipelines:\n  - pipeline: construct\n    actions: [{where: host, shell: \"day 1\"}]\n",
    );
    let run = ick.icktool(&["make-it-so", s(&file)]).ok();
    assert!(
        run.stdout.contains("pipeline construct created")
            && run.stdout.contains("project rome created"),
        "{run}"
    );
    let listed = projects(&ick);
    assert_eq!(listed[0].spec.parameters["foo"], "bar");
    let stored = &pipelines(&ick)[0];
    assert_eq!(stored.spec.actions[0].kind, "shell");
    // The entry's text as written, moved left out of its list.
    assert_eq!(
        stored.text,
        "pipeline: construct\nactions: [{where: host, shell: \"day 1\"}]\n"
    );
}

#[test]
fn malformed_yaml_is_located_by_file_line_and_column_and_changes_nothing() {
    let ick = Ick::start(0);
    // A good file beside the bad one: nothing of either may be applied.
    definitions(
        &ick,
        "a-good.yaml",
        "pipeline: fine\nactions: [{shell: 'true'}]\n",
    );
    let bad = definitions(
        &ick,
        "b-bad.yaml",
        "pipelines:\n  - pipeline: broken\n    actions: [{shell: 'true'}\n",
    );
    let dir = bad.parent().expect("folder").to_path_buf();
    let run = ick.icktool(&["apply", "-f", s(&dir)]);
    run.fails(2, "b-bad.yaml:4:1: ");
    assert!(pipelines(&ick).is_empty(), "nothing may be applied");

    let typo = definitions(
        &ick,
        "b-bad.yaml",
        "pipelines:\n  - pipeline: broken\n    actoins: []\n",
    );
    ick.icktool(&["apply", "-f", s(&dir)])
        .fails(2, &format!("{}:3:5: ", s(&typo)))
        .fails(2, "unknown field `actoins`");
    let wrong_value = definitions(
        &ick,
        "b-bad.yaml",
        "pipelines:\n  - pipeline: broken\n    actions:\n      - shell: x\n        where: moon\n",
    );
    ick.icktool(&["apply", "-f", s(&wrong_value)])
        .fails(2, "b-bad.yaml:5:16: ")
        .fails(2, "moon");
    assert!(pipelines(&ick).is_empty(), "nothing may be applied");
}

#[test]
fn invalid_definitions_are_refused_before_anything_is_sent() {
    let ick = Ick::start(0);
    // A project naming a pipeline that exists nowhere; its valid pipeline
    // in the same file must not be applied either.
    let file = definitions(
        &ick,
        "p.yaml",
        "pipelines:\n  - pipeline: one\n    actions: [{shell: 'true'}]\n\
         projects:\n  - project: p\n    pipelines: [one, nope]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)])
        .fails(2, "p.yaml:5: ")
        .fails(2, "unknown pipeline \"nope\"");
    // A spec the controller refuses.
    let populate = definitions(&ick, "q.yaml", "pipeline: q\nactions: [{populate: {}}]\n");
    ick.icktool(&["apply", "-f", s(&populate)]).fails(
        2,
        "q.yaml:1: pipeline \"q\": action 1: populate needs a digest or a ref",
    );
    // The same definition twice.
    let twice = definitions(
        &ick,
        "twice.yaml",
        "pipeline: t\nactions: [{shell: a}]\n---\npipeline: t\nactions: [{shell: b}]\n",
    );
    ick.icktool(&["apply", "-f", s(&twice)])
        .fails(2, "pipeline \"t\" is defined twice");
    assert!(pipelines(&ick).is_empty() && projects(&ick).is_empty());

    // A change that would break a stored project: `needs:` on a pipeline
    // the project does not run.
    let ok = definitions(
        &ick,
        "ok.yaml",
        "pipelines:\n  - pipeline: one\n    actions: [{shell: 'true'}]\n  - pipeline: two\n    actions: [{shell: 'true'}]\n\
         projects:\n  - project: p\n    pipelines: [one]\n",
    );
    ick.icktool(&["apply", "-f", s(&ok)]).ok();
    let breaking = definitions(
        &ick,
        "breaking.yaml",
        "pipeline: one\nneeds: [two]\nactions: [{shell: 'true'}]\n",
    );
    ick.icktool(&["apply", "-f", s(&breaking)])
        .fails(2, "would break project \"p\"");
    let one = pipelines(&ick)
        .into_iter()
        .find(|p| p.name == "one")
        .expect("one");
    assert_eq!(one.revision, 1, "the stored pipeline is unchanged");
}

#[test]
fn delete_removes_a_project_and_refuses_a_pipeline_in_use() {
    let ick = Ick::start(0);
    ick.icktool(&["apply", "-f", s(&repo_root().join("examples/hello"))])
        .ok();
    ick.icktool(&["pipeline", "delete", "hello-check"])
        .fails(2, "used by project");
    assert_eq!(pipelines(&ick).len(), 2);
    let run = ick.icktool(&["project", "delete", "hello"]).ok();
    assert_eq!(run.stdout, "project hello deleted\n");
    assert!(projects(&ick).is_empty());
    ick.icktool(&["pipeline", "delete", "hello-check"]).ok();
    assert_eq!(pipelines(&ick).len(), 1);
    ick.icktool(&["project", "show", "hello"])
        .fails(2, "Not Found");
    let revisions: Vec<Revision> = ick
        .icktool(&["project", "revisions", "hello", "--output", "json"])
        .ok()
        .json();
    assert!(revisions[0].deleted, "{revisions:?}");
}

#[test]
fn two_bad_documents_are_both_reported_in_place_and_nothing_changes() {
    let ick = Ick::start(0);
    let file = definitions(
        &ick,
        "two.yaml",
        "pipeline: fine\nactions: [{shell: 'true'}]\n---\npipeline: typo\nactoins: []\n\
         ---\npipelines:\n  - pipeline: pack\n    actions:\n      - archive: {ref: \"nu/build-$BUILD_NUMBER\"}\n",
    );
    let run = ick
        .icktool(&["apply", "-f", s(&file)])
        .fails(2, "2 mistakes")
        .fails(2, &format!("{}:5:1: ", s(&file)))
        .fails(2, "unknown field `actoins`")
        .fails(2, &format!("{}:8: pipeline \"pack\": action 1: ", s(&file)))
        .fails(2, "{number}");
    assert!(!run.stderr.contains("applied before"), "{run}");
    assert!(pipelines(&ick).is_empty(), "nothing may be applied");
}

#[test]
fn comments_survive_a_round_trip_and_a_dry_run_shows_a_diff_and_changes_nothing() {
    let ick = Ick::start(0);
    let text = "# How hello builds.\npipeline: build   # the one\nactions:\n  # first, make\n  - shell: make\n";
    let file = definitions(&ick, "build.yaml", text);
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let shown = ick.icktool(&["pipeline", "show", "build"]).ok();
    assert_eq!(shown.stdout, text);
    // Applying what `show` printed changes nothing.
    let again = definitions(&ick, "again.yaml", &shown.stdout);
    let run = ick.icktool(&["apply", "-f", s(&again)]).ok();
    assert_eq!(run.stdout, "pipeline build unchanged\n");

    let changed = definitions(&ick, "build.yaml", &text.replace("make\n", "make check\n"));
    let run = ick.icktool(&["apply", "--dry-run", "-f", s(&changed)]).ok();
    assert!(
        run.stdout
            .contains("pipeline build would be updated (revision 2)")
            && run.stdout.contains("--- pipeline build (stored)")
            && run.stdout.contains("+++ pipeline build (new)")
            && run.stdout.contains("\n-  - shell: make\n")
            && run.stdout.contains("\n+  - shell: make check\n")
            && run.stdout.contains("dry run: nothing was changed"),
        "{run}"
    );
    let stored = &pipelines(&ick)[0];
    assert_eq!((stored.revision, stored.text.as_str()), (1, text));
}

#[test]
fn a_needs_cycle_and_deleting_a_needed_pipeline_are_refused() {
    let ick = Ick::start(0);
    let file = definitions(
        &ick,
        "ab.yaml",
        "pipeline: a\nneeds: [b]\nactions: [{shell: a}]\n---\npipeline: b\nactions: [{shell: b}]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    let cycle = definitions(
        &ick,
        "b.yaml",
        "pipeline: b\nneeds: [a]\nactions: [{shell: b}]\n",
    );
    ick.icktool(&["apply", "-f", s(&cycle)])
        .fails(2, "b.yaml:1: pipeline \"b\": needs: cycle b → a → b");
    ick.icktool(&["pipeline", "delete", "b"])
        .fails(2, "pipeline \"b\" is needed by pipeline a");
    assert_eq!(pipelines(&ick).len(), 2);
}

#[test]
fn apply_warns_on_stderr_of_a_plugin_no_worker_has_and_of_mail_that_cannot_go() {
    let ick = Ick::start(0);
    let file = definitions(
        &ick,
        "ship.yaml",
        "pipeline: push\nactions: [{docker-push: {image: ick}}]\n---\n\
         project: ship\npipelines: [push]\nnotify: [dev@example.org]\n",
    );
    let run = ick.icktool(&["apply", "-f", s(&file)]).ok();
    assert!(
        run.stderr.contains(
            "warning: pipeline \"push\": action 1: no connected worker has a plugin for kind \"docker-push\""
        ) && run
            .stderr
            .contains("warning: project \"ship\" notifies dev@example.org, but the controller has no `mail:` configured"),
        "{run}"
    );
    assert!(run.stdout.contains("pipeline push created"), "{run}");
    let json = ick
        .icktool(&["apply", "-f", s(&file), "--output", "json"])
        .ok();
    assert!(json.stderr.contains("warning: "), "{json}");
    let applied: Vec<Applied> = json.json();
    assert_eq!(applied.len(), 2);
}

#[test]
fn a_build_archives_to_a_ref_named_with_its_number() {
    let ick = Ick::start(1);
    let file = definitions(
        &ick,
        "nu.yaml",
        "pipeline: pack\nactions:\n  - shell: echo hi > out.txt\n  - archive: {path: out.txt, ref: \"nu/build-{number}\"}\n\
         ---\nproject: nu\npipelines: [pack]\n",
    );
    ick.icktool(&["apply", "-f", s(&file)]).ok();
    for number in 1..=2 {
        let run = ick.icktool(&["trigger", "nu", "--follow"]);
        assert_eq!(run.code(), 0, "{run}\n{}", ick.logs());
        let got = ick
            .icktool(&["ref", "get", &format!("nu/build-{number}")])
            .ok();
        assert!(got.stdout.starts_with("sha256:"), "{got}");
    }
}
