//! The remote tier against a real Redis (Debian's `redis-server`, started
//! per test on a free port and stopped by pid): the scenarios of
//! tests/support/remote.rs.

mod support;

use support::remote::{self, Server};

#[test]
fn put_if_absent_first_writer_wins_redis() {
    remote::first_writer_wins(&Server::redis());
}

#[test]
fn signed_records_tampered_in_the_store_are_rejected_and_counted_redis() {
    remote::tampered_objects_are_rejected(&Server::redis());
}

#[test]
fn read_only_mode_writes_nothing_redis() {
    remote::read_only_writes_nothing(&Server::redis());
}

#[test]
fn queue_items_and_counters_never_reach_the_remote_redis() {
    remote::queues_and_counters_stay(&Server::redis());
}

#[test]
fn a_flytekit_run_on_one_cache_is_a_hit_on_another_after_sync_redis() {
    remote::flytekit_runs_hit_across_caches(&Server::redis());
}

#[test]
fn a_frozen_server_fails_sync_within_its_deadline_redis() {
    remote::frozen_server_fails_within_deadline(&Server::redis());
}
