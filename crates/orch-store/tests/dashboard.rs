//! The dashboard's state in the store: sessions and one-time sign-in links (only hashes kept,
//! links single use, expiry), and the board's page with its filters and counts.

#![allow(clippy::unwrap_used)]

mod support;

use orch_core::{Status, Step, StepAction, TaskTitle, Timestamp};
use orch_store::{BoardQuery, DashboardGrant};
use support::store_tests;
use support::*;

fn grant(hash: &str, actor: &str, created: i64, expires: i64) -> DashboardGrant {
    DashboardGrant {
        token_hash: hash.to_owned(),
        actor: actor.to_owned(),
        created_at: Timestamp(created),
        expires_at: Timestamp(expires),
    }
}

async fn a_session_is_found_by_its_hash_until_it_expires_or_ends(db: TestDb) {
    let s = &db.store;
    s.create_dashboard_session(&grant("h1", "alice", 1_000, 5_000))
        .await
        .unwrap();
    s.create_dashboard_session(&grant("h2", "bob", 1_000, 5_000))
        .await
        .unwrap();
    let found = s.dashboard_session("h1", Timestamp(4_999)).await.unwrap();
    assert_eq!(found, Some(grant("h1", "alice", 1_000, 5_000)));
    assert_eq!(
        s.dashboard_session("h1", Timestamp(5_000)).await.unwrap(),
        None
    );
    assert_eq!(
        s.dashboard_session("nope", Timestamp(1_000)).await.unwrap(),
        None
    );
    // Ending one leaves the other.
    assert!(s.end_dashboard_session("h1").await.unwrap());
    assert!(!s.end_dashboard_session("h1").await.unwrap());
    assert_eq!(
        s.dashboard_session("h1", Timestamp(2_000)).await.unwrap(),
        None
    );
    assert!(s
        .dashboard_session("h2", Timestamp(2_000))
        .await
        .unwrap()
        .is_some());
    // A session made later sweeps the expired ones out of the table.
    s.create_dashboard_session(&grant("h3", "carol", 6_000, 9_000))
        .await
        .unwrap();
    let cells = db.raw_cells().await;
    assert!(!cells
        .iter()
        .any(|(table, cell)| table == "dashboard_sessions" && cell == "h2"));
    // The same hash twice is refused, not merged.
    assert!(s
        .create_dashboard_session(&grant("h3", "mallory", 6_000, 9_000))
        .await
        .is_err());
}

async fn a_sign_in_link_makes_one_session_for_its_actor_and_is_gone(db: TestDb) {
    let s = &db.store;
    s.create_sign_in_link(&grant("link", "alice", 1_000, 2_000))
        .await
        .unwrap();
    // Whatever actor the caller puts in the session, the link's is used.
    let session = s
        .sign_in_with_link("link", &grant("sess", "mallory", 1_500, 9_000))
        .await
        .unwrap();
    assert_eq!(session, Some(grant("sess", "alice", 1_500, 9_000)));
    assert_eq!(
        s.dashboard_session("sess", Timestamp(1_600))
            .await
            .unwrap()
            .map(|g| g.actor),
        Some("alice".to_owned())
    );
    // Used once.
    assert_eq!(
        s.sign_in_with_link("link", &grant("sess2", "x", 1_600, 9_000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.dashboard_session("sess2", Timestamp(1_700))
            .await
            .unwrap(),
        None
    );
    // Expired: no session, and the link is deleted all the same.
    s.create_sign_in_link(&grant("old", "bob", 1_000, 2_000))
        .await
        .unwrap();
    assert_eq!(
        s.sign_in_with_link("old", &grant("sess3", "x", 2_000, 9_000))
            .await
            .unwrap(),
        None
    );
    assert!(!db
        .raw_cells()
        .await
        .iter()
        .any(|(table, cell)| table == "dashboard_sign_in_links" && cell == "old"));
}

fn agent_step(agent: &str) -> Step {
    Step {
        name: "work".to_owned(),
        action: StepAction::Agent {
            agent: agent.to_owned(),
            prompt: "p".to_owned(),
            model: None,
            profile: None,
        },
        timeout: None,
        network: true,
        plan: false,
    }
}

async fn the_board_pages_newest_first_and_counts_under_its_filters(db: TestDb) {
    let mut tasks: Vec<_> = (0..6).map(|i| task(&format!("t{i}"), &[])).collect();
    tasks[0].spec.title = TaskTitle::parse("Fix the Parser".to_owned()).unwrap();
    tasks[1].spec.labels = vec!["docs".into()];
    tasks[2].spec.steps = vec![agent_step("claude")];
    tasks[3].spec.labels = vec!["docs".into()];
    tasks[3].spec.steps = vec![agent_step("codex")];
    tasks[4].spec.requires_approval = true;
    let ids = db.submit(tasks, 1).await;
    let board = |query: BoardQuery| {
        let store = db.store.clone();
        async move { store.board(&query).await.unwrap() }
    };
    let ids_of = |page: &orch_store::BoardPage| page.tasks.iter().map(|t| t.id).collect::<Vec<_>>();

    // Everything, two per page, newest first; the counts are of every matching task.
    let first = board(BoardQuery {
        limit: 2,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&first), vec![ids[5], ids[4]]);
    assert_eq!(first.counts.get(&Status::Queued), Some(&5));
    assert_eq!(first.counts.get(&Status::AwaitingApproval), Some(&1));
    let second = board(BoardQuery {
        limit: 2,
        before: Some(ids[4]),
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&second), vec![ids[3], ids[2]]);
    let last = board(BoardQuery {
        limit: 2,
        before: Some(ids[0]),
        ..BoardQuery::default()
    })
    .await;
    assert!(last.tasks.is_empty());

    // Status: the page is filtered, the counts still show every status.
    let approval = board(BoardQuery {
        status: Some(Status::AwaitingApproval),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&approval), vec![ids[4]]);
    assert_eq!(approval.counts.get(&Status::Queued), Some(&5));

    // Label, agent, text (any case, or the id), together.
    let docs = board(BoardQuery {
        label: Some("docs".into()),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&docs), vec![ids[3], ids[1]]);
    assert_eq!(docs.counts.values().sum::<u64>(), 2);
    let claude = board(BoardQuery {
        agent: Some("claude".into()),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&claude), vec![ids[2]]);
    let both = board(BoardQuery {
        label: Some("docs".into()),
        agent: Some("codex".into()),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&both), vec![ids[3]]);
    let text = board(BoardQuery {
        text: Some("fix the parser".into()),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(ids_of(&text), vec![ids[0]]);
    let by_id = board(BoardQuery {
        text: Some(ids[2].0.to_string()),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    // The id, and titles holding the digits (`task t2`'s).
    assert!(ids_of(&by_id).contains(&ids[2]), "{:?}", ids_of(&by_id));
    // Text is matched as text: SQL wildcards and quotes are just characters.
    for odd in ["%", "_", "'", "\\"] {
        let none = board(BoardQuery {
            text: Some(odd.into()),
            limit: 10,
            ..BoardQuery::default()
        })
        .await;
        assert!(none.tasks.is_empty(), "{odd}");
        assert!(none.counts.is_empty(), "{odd}");
    }

    // Another project's tasks are not on this project's board.
    let other = db
        .store
        .ensure_project("/elsewhere", Timestamp(1))
        .await
        .unwrap();
    let mine = board(BoardQuery {
        project: Some(db.project),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert_eq!(mine.tasks.len(), 6);
    let theirs = board(BoardQuery {
        project: Some(other.id),
        limit: 10,
        ..BoardQuery::default()
    })
    .await;
    assert!(theirs.tasks.is_empty());
}

store_tests!(
    a_session_is_found_by_its_hash_until_it_expires_or_ends,
    a_sign_in_link_makes_one_session_for_its_actor_and_is_gone,
    the_board_pages_newest_first_and_counts_under_its_filters,
);
