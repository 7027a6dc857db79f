//! Admission: a user's queries past the limit wait in order, past the line they are refused, other
//! users are not held up, and every way a query ends frees its slot.

use std::time::Duration;

use tonic::Code;

use super::*;

fn later(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

fn timed_out() -> Status {
    Status::deadline_exceeded("timed out")
}

#[tokio::test]
async fn a_second_query_waits_for_the_first_and_another_user_does_not() {
    let admission = Admission::new(1, 1);
    let first = admission.admit("ana", later(5), timed_out).await.unwrap();
    let other = admission.admit("ben", later(5), timed_out).await.expect("another user gets a slot at once");
    let waiting = tokio::spawn({
        let admission = admission.clone();
        async move { admission.admit("ana", later(5), timed_out).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "the second query of ana waits");
    assert_eq!(admission.stats().queued.load(Ordering::Relaxed), 1);
    drop(first);
    waiting.await.unwrap().expect("the waiting query runs once the first ends");
    drop(other);
    assert!(admission.lock().is_empty(), "idle users are forgotten");
}

#[tokio::test]
async fn past_the_line_a_query_is_refused_at_once_naming_the_setting() {
    let admission = Admission::new(1, 1);
    let _running = admission.admit("ana", later(5), timed_out).await.unwrap();
    let queued = tokio::spawn({
        let admission = admission.clone();
        async move { admission.admit("ana", later(5), timed_out).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = admission.admit("ana", later(5), timed_out).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("flight_sql.max_queued_per_user"), "{}", refused.message());
    assert!(refused.message().contains("flight_sql.max_queries_per_user"), "{}", refused.message());
    assert_eq!(admission.stats().refused.load(Ordering::Relaxed), 1);
    queued.abort();
}

#[tokio::test]
async fn the_wait_counts_against_the_time_limit_and_leaves_the_line() {
    let admission = Admission::new(1, 1);
    let running = admission.admit("ana", later(5), timed_out).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(100);
    let late = admission.admit("ana", deadline, timed_out).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded);
    // The timed-out waiter left the line: another may queue, and gets the slot when it frees.
    let next = tokio::spawn({
        let admission = admission.clone();
        async move { admission.admit("ana", later(5), timed_out).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(running);
    next.await.unwrap().expect("the line has room again");
    assert!(admission.lock().is_empty());
}

#[tokio::test]
async fn a_waiter_whose_client_goes_away_leaves_the_line_and_slots_come_back() {
    let admission = Admission::new(2, 1);
    let (a, b) = (
        admission.admit("ana", later(5), timed_out).await.unwrap(),
        admission.admit("ana", later(5), timed_out).await.unwrap(),
    );
    assert_eq!(admission.running("ana"), 2);
    let gone = tokio::spawn({
        let admission = admission.clone();
        async move { admission.admit("ana", later(5), timed_out).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    gone.abort();
    let _ = gone.await;
    assert_eq!(admission.lock().get("ana").map(|l| l.waiting), Some(0), "the dropped waiter left the line");
    drop((a, b));
    assert_eq!(admission.running("ana"), 0);
    assert!(admission.lock().is_empty());
}
