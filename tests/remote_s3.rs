//! The remote tier against a real S3 server (SeaweedFS 4.48 `weed mini` from .venv-weed, started
//! per test on free ports and stopped by pid): the scenarios of
//! tests/support/remote.rs.

mod support;

use support::remote::{self, Server};

#[test]
fn put_if_absent_first_writer_wins_s3() {
    remote::first_writer_wins(&Server::s3());
}

#[test]
fn signed_records_tampered_in_the_store_are_rejected_and_counted_s3() {
    remote::tampered_objects_are_rejected(&Server::s3());
}

#[test]
fn read_only_mode_writes_nothing_s3() {
    remote::read_only_writes_nothing(&Server::s3());
}

#[test]
fn queue_items_and_counters_never_reach_the_remote_s3() {
    remote::queues_and_counters_stay(&Server::s3());
}

#[test]
fn a_flytekit_run_on_one_cache_is_a_hit_on_another_after_sync_s3() {
    remote::flytekit_runs_hit_across_caches(&Server::s3());
}

#[test]
fn a_frozen_server_fails_sync_within_its_deadline_s3() {
    remote::frozen_server_fails_within_deadline(&Server::s3());
}

#[test]
fn mounts_share_flytekit_entries_and_values_across_machines_s3() {
    remote::mounts_share_across_machines(&Server::s3());
}

#[test]
fn a_mount_survives_a_frozen_and_a_stopped_server_s3() {
    remote::mounted_survives_a_frozen_and_a_stopped_server(&mut Server::s3());
}

#[test]
fn mounts_reject_tampered_records_and_ro_writes_nothing_s3() {
    remote::mounted_trust_and_read_only(&Server::s3());
}

#[test]
fn flyte2_entries_are_shared_through_mounts_and_sync_s3() {
    remote::flyte2_entries_are_shared(&Server::s3());
}
