//! [`Recordings`]' properties: chunks committed with ingest's offsets,
//! replaced when a batch is replayed, listed per project and per person,
//! and found by age for retention.

use uuid::Uuid;
use warren_core::recording::RecordingChunk;

use super::{assign, commit, person, MetaFactory, TEAM};
use crate::{IngestCommits, Recordings};

fn chunk(
    team_id: i64,
    session: &str,
    name: &str,
    distinct_id: &str,
    first_ms: i64,
    last_ms: i64,
) -> RecordingChunk {
    RecordingChunk {
        team_id,
        session_id: session.into(),
        chunk: name.into(),
        distinct_id: distinct_id.into(),
        first_ms,
        last_ms,
        events: 10,
        bytes: 100,
        clicks: 1,
        first_url: Some(format!("https://shop.test/{session}/{name}")),
    }
}

pub async fn recordings_are_listed_per_project_and_person(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let alice = person(1, serde_json::json!({}));
    let mut batch = commit();
    batch.distinct_ids = vec![assign("anon-a", &alice), assign("alice", &alice)];
    batch.persons = vec![alice.clone()];
    let alice = alice.uuid;
    batch.recordings = vec![
        chunk(TEAM, "s1", "00000-1", "anon-a", 1_000, 2_000),
        chunk(TEAM, "s1", "00000-5", "alice", 2_500, 4_000),
        chunk(TEAM, "s2", "00001-3", "bob", 5_000, 6_000),
        // Another project's session of the same id is never counted.
        chunk(2, "s1", "00000-2", "anon-a", 900, 9_000),
    ];
    store.commit_ingest(&batch).await.expect("commit");

    let all = store.recordings(TEAM, None, 10, 0).await.expect("list");
    let seen: Vec<_> =
        all.iter().map(|r| (r.session_id.as_str(), r.start_ms, r.end_ms, r.events, r.chunks)).collect();
    assert_eq!(seen, vec![("s2", 5_000, 6_000, 10, 1), ("s1", 1_000, 4_000, 20, 2)]);
    let s1 = &all[1];
    assert_eq!((s1.distinct_id.as_str(), s1.person_id), ("anon-a", Some(alice)));
    assert_eq!(s1.first_url.as_deref(), Some("https://shop.test/s1/00000-1"));
    assert_eq!(all[0].person_id, None, "bob has no person");

    let of_alice = store.recordings(TEAM, Some(alice), 10, 0).await.expect("list");
    assert_eq!(of_alice.iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>(), vec!["s1"]);
    assert!(store.recordings(TEAM, Some(Uuid::new_v4()), 10, 0).await.expect("list").is_empty());
    let second_page = store.recordings(TEAM, None, 1, 1).await.expect("list");
    assert_eq!(second_page.iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>(), vec!["s1"]);

    let chunks = store.recording_chunks(TEAM, "s1").await.expect("chunks");
    assert_eq!(chunks.iter().map(|c| c.chunk.as_str()).collect::<Vec<_>>(), vec!["00000-1", "00000-5"]);
    assert!(store.recording_chunks(3, "s1").await.expect("chunks").is_empty());
}

pub async fn a_replayed_chunk_replaces_its_row_and_retention_finds_old_ones(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let mut batch = commit();
    batch.recordings = vec![
        chunk(TEAM, "s1", "00000-1", "a", 1_000, 2_000),
        chunk(TEAM, "s2", "00000-2", "a", 8_000, 9_000),
    ];
    store.commit_ingest(&batch).await.expect("commit");
    // The same batch again, cut shorter: the chunk holds fewer events.
    let mut replay = commit();
    let mut shorter = chunk(TEAM, "s1", "00000-1", "a", 1_000, 1_500);
    shorter.events = 4;
    replay.recordings = vec![shorter.clone()];
    store.commit_ingest(&replay).await.expect("commit");
    assert_eq!(store.recording_chunks(TEAM, "s1").await.expect("chunks"), vec![shorter.clone()]);

    let expired = store.expired_recording_chunks(5_000, 10).await.expect("expired");
    assert_eq!(expired, vec![shorter.clone()]);
    store.delete_recording_chunks(&expired).await.expect("delete");
    assert!(store.recording_chunks(TEAM, "s1").await.expect("chunks").is_empty());
    assert_eq!(store.recordings(TEAM, None, 10, 0).await.expect("list").len(), 1);
    assert!(store.expired_recording_chunks(5_000, 10).await.expect("expired").is_empty());
}
