//! DescribeUserScramCredentials and AlterUserScramCredentials: super users
//! manage users' SCRAM credentials (the client salts and hashes; the
//! metadata log stores only the derived keys). Anyone else gets
//! CLUSTER_AUTHORIZATION_FAILED, as Kafka answers without ALTER/DESCRIBE
//! on the cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use crate::broker::Broker;
use crate::protocol::{count_error, str_bytes, RequestContext};
use crate::tenant::credentials::{self, Alteration};

fn not_authorized() -> (i16, Option<String>) {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        Some("Cluster authorization failed.".to_owned()),
    )
}

pub async fn handle_describe(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let response = DescribeUserScramCredentialsResponse::default();
    if !context.principal.super_user {
        let (code, message) = not_authorized();
        count_error(context.api_key, code);
        return response
            .with_error_code(code)
            .with_error_message(message.as_deref().map(str_bytes));
    }
    let image = broker.image();
    let describe = |user: &str| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match image.scram_credentials.get(user) {
            Some(by_mechanism) => result.with_credential_infos(
                by_mechanism
                    .iter()
                    .map(|(mechanism, credential)| {
                        CredentialInfo::default()
                            .with_mechanism(*mechanism)
                            .with_iterations(credential.iterations)
                    })
                    .collect(),
            ),
            None => result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(str_bytes(&format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                )))),
        }
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        None => image
            .scram_credentials
            .keys()
            .map(|user| describe(user))
            .collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<&str> = users
                .iter()
                .filter(|u| !seen.insert(u.name.as_str()))
                .map(|u| u.name.as_str())
                .collect();
            let mut answered = BTreeSet::new();
            users
                .iter()
                .filter(|u| answered.insert(u.name.as_str()))
                .map(|u| {
                    let name = u.name.as_str();
                    if duplicates.contains(name) {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(str_bytes(name))
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                            ))))
                    } else {
                        describe(name)
                    }
                })
                .collect()
        }
    };
    response.with_results(results)
}

pub async fn handle_alter(
    broker: Arc<Broker>,
    context: RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let alterations: Vec<Alteration> = request
        .deletions
        .iter()
        .map(|d| Alteration::Delete {
            user: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .chain(request.upsertions.iter().map(|u| Alteration::Upsert {
            user: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        }))
        .collect();
    let result = |user: &str, code: i16, message: Option<String>| {
        count_error(context.api_key, code);
        AlterUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_error_code(code)
            .with_error_message(message.as_deref().map(str_bytes))
    };
    if !context.principal.super_user {
        let (code, message) = not_authorized();
        let mut users: Vec<&str> = alterations
            .iter()
            .map(|a| match a {
                Alteration::Delete { user, .. } | Alteration::Upsert { user, .. } => user.as_str(),
            })
            .collect();
        users.dedup();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| result(u, code, message.clone()))
                .collect(),
        );
    }
    let config = broker.config.clone();
    let image = broker.image();
    // Deriving the keys hashes: not on an async worker.
    let plan =
        match tokio::task::spawn_blocking(move || credentials::plan(&alterations, &image, &config))
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                return AlterUserScramCredentialsResponse::default().with_results(vec![result(
                    "",
                    ResponseError::UnknownServerError.code(),
                    Some(format!("planning failed: {e}")),
                )])
            }
        };
    let mut outcomes: Vec<(i16, Option<String>)> = plan
        .users
        .iter()
        .map(|(_, outcome)| match outcome {
            Ok(()) => (0, None),
            Err((error, message)) => (error.code(), Some(message.clone())),
        })
        .collect();
    if !plan.changes.is_empty() {
        let (owners, changes): (Vec<usize>, Vec<_>) = plan.changes.into_iter().unzip();
        match broker.metadata.alter_scram_credentials(changes).await {
            Ok(codes) => {
                for (owner, code) in owners.iter().zip(codes) {
                    if code != 0 && outcomes[*owner].0 == 0 {
                        outcomes[*owner] = (code, None);
                    }
                }
            }
            Err(e) => {
                for owner in owners {
                    outcomes[owner] = (e.code(), Some(e.to_string()));
                }
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(
        plan.users
            .iter()
            .zip(outcomes)
            .map(|((user, _), (code, message))| result(user, code, message))
            .collect(),
    )
}
