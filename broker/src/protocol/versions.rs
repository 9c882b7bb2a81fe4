//! The one table of APIs and versions this broker implements. ApiVersions
//! advertises exactly this; the connection refuses anything outside it.

use kafka_protocol::messages::ApiKey;

/// `(api, min version, max version, metric label)`.
pub const SUPPORTED: &[(ApiKey, i16, i16, &str)] = &[
    (ApiKey::Produce, 3, 13, "produce"),
    (ApiKey::Fetch, 4, 17, "fetch"),
    (ApiKey::ListOffsets, 1, 10, "list_offsets"),
    (ApiKey::Metadata, 0, 13, "metadata"),
    (ApiKey::ApiVersions, 0, 4, "api_versions"),
    (ApiKey::CreateTopics, 2, 7, "create_topics"),
    (ApiKey::DeleteTopics, 1, 6, "delete_topics"),
    (ApiKey::DeleteRecords, 0, 2, "delete_records"),
    (
        ApiKey::OffsetForLeaderEpoch,
        2,
        4,
        "offset_for_leader_epoch",
    ),
    (ApiKey::DescribeConfigs, 1, 4, "describe_configs"),
    (ApiKey::AlterConfigs, 0, 2, "alter_configs"),
    (ApiKey::CreatePartitions, 0, 3, "create_partitions"),
    (
        ApiKey::IncrementalAlterConfigs,
        0,
        1,
        "incremental_alter_configs",
    ),
    (ApiKey::DescribeCluster, 0, 2, "describe_cluster"),
    (ApiKey::FindCoordinator, 0, 6, "find_coordinator"),
    (ApiKey::JoinGroup, 0, 9, "join_group"),
    (ApiKey::SyncGroup, 0, 5, "sync_group"),
    (ApiKey::Heartbeat, 0, 4, "heartbeat"),
    (ApiKey::LeaveGroup, 0, 5, "leave_group"),
    (ApiKey::OffsetCommit, 2, 9, "offset_commit"),
    (ApiKey::OffsetFetch, 1, 9, "offset_fetch"),
    (ApiKey::DescribeGroups, 0, 6, "describe_groups"),
    (ApiKey::ListGroups, 0, 5, "list_groups"),
    (ApiKey::DeleteGroups, 0, 2, "delete_groups"),
    (ApiKey::OffsetDelete, 0, 0, "offset_delete"),
    (ApiKey::InitProducerId, 0, 5, "init_producer_id"),
    // Transactions before KIP-890 part 2 (which bumps the epoch per
    // transaction from AddPartitionsToTxn v4+ / EndTxn v5 on); v4+ of
    // AddPartitionsToTxn is the broker-to-broker form.
    (ApiKey::AddPartitionsToTxn, 0, 3, "add_partitions_to_txn"),
    (ApiKey::AddOffsetsToTxn, 0, 3, "add_offsets_to_txn"),
    (ApiKey::EndTxn, 0, 3, "end_txn"),
    (ApiKey::TxnOffsetCommit, 0, 3, "txn_offset_commit"),
    // v0 of the handshake sends raw SASL tokens outside Kafka's framing:
    // every current client uses v1 and SaslAuthenticate.
    (ApiKey::SaslHandshake, 1, 1, "sasl_handshake"),
    (ApiKey::SaslAuthenticate, 0, 2, "sasl_authenticate"),
    (ApiKey::DescribeAcls, 1, 3, "describe_acls"),
    (ApiKey::CreateAcls, 1, 3, "create_acls"),
    (ApiKey::DeleteAcls, 1, 3, "delete_acls"),
    (
        ApiKey::DescribeUserScramCredentials,
        0,
        0,
        "describe_user_scram_credentials",
    ),
    (
        ApiKey::AlterUserScramCredentials,
        0,
        0,
        "alter_user_scram_credentials",
    ),
    (ApiKey::DescribeClientQuotas, 0, 1, "describe_client_quotas"),
    (ApiKey::AlterClientQuotas, 0, 1, "alter_client_quotas"),
];

/// Whether `version` of `api` is implemented.
pub fn is_supported(api: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|&(key, min, max, _)| key == api && (min..=max).contains(&version))
}

/// The metric label of an API.
pub fn api_name(api: ApiKey) -> &'static str {
    SUPPORTED
        .iter()
        .find(|entry| entry.0 == api)
        .map(|entry| entry.3)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_beyond_what_the_codec_covers() {
        for &(key, min, max, _) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(
                min >= codec.min && max <= codec.max,
                "{key:?} {min}..{max} vs {codec}"
            );
        }
        assert!(is_supported(ApiKey::Produce, 3));
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(is_supported(ApiKey::JoinGroup, 0));
        assert!(!is_supported(ApiKey::OffsetCommit, 1));
    }
}
