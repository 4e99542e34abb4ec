//! Logs: every chunk kept in order with its stream, the whole log or one
//! node's, and a live stream that replays and follows until the build ends.

mod common;

use common::{Env, SOON};
use ick_api::Problem;
use ick_api::controller::{BuildStatus, LogChunk, LogEvent, NodeStatus};
use ick_api::work::{OutputChunk, Stream};
use ick_tests::controller::{LogFollower, json};
use ick_tests::idp::Storage;
use reqwest::{Method, StatusCode};

on_both_storages!(
    the_log_keeps_each_chunks_stream_and_order,
    the_log_reads_page_by_page_in_the_same_order,
    the_log_stream_replays_and_follows_a_running_build_until_it_ends,
    a_long_log_is_replayed_whole_and_in_order,
);

fn chunk(seq: i64, stream: Stream, data: &str) -> OutputChunk {
    OutputChunk {
        seq,
        stream,
        data: data.to_string(),
    }
}

async fn the_log_keeps_each_chunks_stream_and_order(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let one = w.claim_within(SOON).await;
    let chunks = [
        chunk(0, Stream::Stdout, "out 1\n"),
        chunk(1, Stream::Stderr, "err 1\n"),
        chunk(2, Stream::Stdout, "out 2\n"),
    ];
    // Sent out of order, in two batches.
    let r = w
        .output_raw(&one.node_id, one.attempt, vec![chunks[2].clone()])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = w
        .output_raw(&one.node_id, one.attempt, chunks[..2].to_vec())
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    w.finish(&one, 0, 3).await;
    let two = w.claim_within(SOON).await;
    w.output(&two, 0, &["second action\n"]).await;
    w.finish(&two, 0, 1).await;

    let log: Vec<LogChunk> = env.admin.get(&format!("/builds/{}/log", build.id)).await;
    let got: Vec<(&str, u32, Stream, &str)> = log
        .iter()
        .map(|c| (c.pipeline.as_str(), c.index, c.stream, c.data.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", 0, Stream::Stdout, "out 1\n"),
            ("a", 0, Stream::Stderr, "err 1\n"),
            ("a", 0, Stream::Stdout, "out 2\n"),
            ("a", 1, Stream::Stdout, "second action\n"),
        ]
    );
    let only: Vec<LogChunk> = env
        .admin
        .get(&format!("/builds/{}/log?node={}", build.id, two.node_id))
        .await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].node, two.node_id);

    let text = env
        .admin
        .request(Method::GET, &format!("/builds/{}/log", build.id))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert_eq!(
        text,
        "==> a action 1 (attempt 1)\nout 1\nerr 1\nout 2\n==> a action 2 (attempt 1)\nsecond action\n"
    );
    let r = env
        .admin
        .request(Method::GET, &format!("/builds/{}/log?node=nope", build.id))
        .send()
        .await
        .expect("GET");
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
    let r = env
        .admin
        .request(Method::GET, "/builds/nope/log")
        .send()
        .await
        .expect("GET");
    let _: Problem = json(r, StatusCode::NOT_FOUND).await;
}

async fn the_log_stream_replays_and_follows_a_running_build_until_it_ends(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let one = w.claim_within(SOON).await;
    w.output(&one, 0, &["before anyone followed\n"]).await;

    let mut follower = LogFollower::open(&env.admin, &build.id, None).await;
    // Replay: the nodes as they are, and the output so far.
    let mut replay = Vec::new();
    while replay.len() < 3 {
        replay.push(follower.expect(SOON).await);
    }
    match (&replay[0], &replay[1], &replay[2]) {
        (LogEvent::Node(n1), LogEvent::Chunk(c), LogEvent::Node(n2)) => {
            assert_eq!((n1.index, n1.status), (0, NodeStatus::Running));
            assert_eq!(c.data, "before anyone followed\n");
            assert_eq!((n2.index, n2.status), (1, NodeStatus::Queued));
        }
        other => panic!("unexpected replay {other:?}"),
    }
    // Follow: new output as it comes.
    w.output(&one, 1, &["while followed\n"]).await;
    match follower.expect(SOON).await {
        LogEvent::Chunk(c) => assert_eq!((c.seq, c.data.as_str()), (1, "while followed\n")),
        other => panic!("expected a chunk, got {other:?}"),
    }
    w.finish(&one, 0, 2).await;
    match follower.expect(SOON).await {
        LogEvent::Node(n) => assert_eq!(
            (n.index, n.status, n.exit_code),
            (0, NodeStatus::Succeeded, Some(0))
        ),
        other => panic!("expected node 1's end, got {other:?}"),
    }
    let two = w.claim_within(SOON).await;
    w.output(&two, 0, &["last words\n"]).await;
    w.finish(&two, 0, 1).await;
    let mut rest = Vec::new();
    while let Some(event) = tokio::time::timeout(SOON, follower.next())
        .await
        .expect("in time")
    {
        rest.push(event);
    }
    let texts: Vec<String> = rest
        .iter()
        .filter_map(|e| match e {
            LogEvent::Chunk(c) => Some(c.data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["last words\n"]);
    match rest.last() {
        Some(LogEvent::End(b)) => assert_eq!(b.status, BuildStatus::Succeeded),
        other => panic!("the stream must end with the build: {other:?}"),
    }

    // A stream opened after the end replays everything and ends.
    let mut late = LogFollower::open(&env.admin, &build.id, Some(&one.node_id)).await;
    let mut all = Vec::new();
    while let Some(e) = tokio::time::timeout(SOON, late.next())
        .await
        .expect("in time")
    {
        all.push(e);
    }
    // Each node as it went: started (on its worker), its output, its end.
    let seen: Vec<String> = all
        .iter()
        .map(|e| match e {
            LogEvent::Node(n) => format!("{:?} {:?} {:?}", n.status, n.worker, n.exit_code),
            LogEvent::Chunk(c) => c.data.clone(),
            LogEvent::End(b) => format!("end {:?}", b.status),
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "Running Some(\"w1\") None",
            "before anyone followed\n",
            "while followed\n",
            "Succeeded Some(\"w1\") Some(0)",
            "end Succeeded",
        ]
    );
}

async fn the_log_reads_page_by_page_in_the_same_order(storage: Storage) {
    let env = Env::start(storage).await;
    env.admin
        .pipeline("a", "actions: [{shell: one}, {shell: two}]")
        .await;
    env.admin.pipeline("b", "actions: [{shell: three}]").await;
    env.admin.project("p", "pipelines: [a, b]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    for _ in 0..3 {
        let a = w.claim_within(SOON).await;
        let lines: Vec<String> = (0..7)
            .map(|i| format!("{} {} line {i}\n", a.pipeline, a.index))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        w.output(&a, 0, &lines).await;
        w.finish(&a, 0, 7).await;
    }
    let path = format!("/builds/{}/log", build.id);
    let whole: Vec<LogChunk> = env.admin.get(&path).await;
    assert_eq!(whole.len(), 21);

    // Pages of 4, each pointing at the next, read the same chunks.
    let mut paged: Vec<LogChunk> = Vec::new();
    let mut next = Some(format!("{path}?limit=4"));
    let mut pages = 0;
    while let Some(url) = next {
        let r = env
            .admin
            .request(Method::GET, &url)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), StatusCode::OK);
        next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(u, _)| u.to_string());
        let page: Vec<LogChunk> = r.json().await.expect("json");
        assert!(page.len() <= 4);
        paged.extend(page);
        pages += 1;
        assert!(pages < 20, "the pages never end");
    }
    assert_eq!(paged, whole);
    assert_eq!(pages, 6, "21 chunks in pages of 4");

    // One node's, as text, from a cursor.
    let node = &whole[7].node;
    let r = env
        .admin
        .request(Method::GET, &format!("{path}?node={node}&limit=3"))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("text page");
    let cursor = r
        .headers()
        .get(ick_api::controller::NEXT_PAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("a cursor");
    let text = r.text().await.expect("text");
    assert_eq!(
        text,
        "==> a action 2 (attempt 1)\na 1 line 0\na 1 line 1\na 1 line 2\n"
    );
    let rest: Vec<LogChunk> = env
        .admin
        .get(&format!("{path}?node={node}&after={cursor}&limit=100"))
        .await;
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0].data, "a 1 line 3\n");

    // Bad cursors and limits are refused.
    for bad in [
        "?limit=0",
        "?limit=10001",
        "?after=1.1.1",
        "?after=nonsense&limit=3",
        "?after=1.-1.1&limit=3",
    ] {
        let r = env
            .admin
            .request(Method::GET, &format!("{path}{bad}"))
            .send()
            .await
            .expect("answers");
        let problem: Problem = json(r, StatusCode::BAD_REQUEST).await;
        assert!(problem.detail.is_some(), "{bad}: {problem:?}");
    }
}

async fn a_long_log_is_replayed_whole_and_in_order(storage: Storage) {
    // More chunks than the replay reads at a time, over two attempts'
    // worth of pages: all of them, in order, then the end.
    const CHUNKS: usize = 2_500;
    let env = Env::start(storage).await;
    env.admin.pipeline("a", "actions: [{shell: loud}]").await;
    env.admin.project("p", "pipelines: [a]").await;
    let build = env.admin.trigger("p").await;
    let w = env.worker("w1");
    let a = w.claim_within(SOON).await;
    let lines: Vec<String> = (0..CHUNKS).map(|i| format!("line {i}\n")).collect();
    for (n, batch) in lines.chunks(500).enumerate() {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        w.output(&a, (n * 500) as i64, &batch).await;
    }
    w.finish(&a, 0, CHUNKS as i64).await;

    let mut follower = LogFollower::open(&env.admin, &build.id, None).await;
    let mut texts = Vec::new();
    let mut last = None;
    while let Some(e) = tokio::time::timeout(SOON, follower.next())
        .await
        .expect("in time")
    {
        if let LogEvent::Chunk(c) = &e {
            texts.push(c.data.clone());
        }
        last = Some(e);
    }
    assert_eq!(texts, lines);
    match last {
        Some(LogEvent::End(b)) => assert_eq!(b.status, BuildStatus::Succeeded),
        other => panic!("the stream must end with the build: {other:?}"),
    }
}
