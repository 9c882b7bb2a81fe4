//! The `metrobus` command: `serve` (the default) runs a broker; `config`
//! prints the effective configuration; `healthcheck` asks a running broker
//! whether it is ready (for container healthchecks, with no extra tools);
//! `user` and `tenant` manage SCRAM users and tenants, and `acl` the ACLs,
//! over the Kafka protocol.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use metrobus::config::{BrokerConfig, SETTING_NAMES};
use tracing::info;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "metrobus",
    version,
    about = "A Kafka-compatible message bus on RocksDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (defaults < file < env < flags).
    Config(ServeArgs),
    /// Exit 0 if the broker's /health/ready answers 200.
    Healthcheck {
        /// The broker's HTTP address.
        #[arg(long, default_value = "127.0.0.1:9644")]
        http: String,
    },
    /// Manage users' SCRAM credentials (a super user's task).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        connection: AdminArgs,
    },
    /// Tenants: list them, create one with its first user, set their quotas.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
        #[command(flatten)]
        connection: AdminArgs,
    },
    /// ACLs (Kafka's model; resource names are internal names such as
    /// `acme.payroll`, prefixes such as `acme.`).
    Acl {
        #[command(subcommand)]
        action: AclAction,
        #[command(flatten)]
        connection: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AclAction {
    /// Add an ACL.
    Add(AclSpec),
    /// List the ACLs matching the options (all by default), one a line:
    /// type, name, pattern, principal, host, operation, permission.
    List(AclSpec),
    /// Delete the ACLs matching the options, and list them.
    Delete(AclSpec),
}

/// An ACL, or a filter of ACLs (what is left out matches anything).
#[derive(Debug, Args, Clone)]
struct AclSpec {
    /// The principal, `User:NAME` (`User:*`: everyone).
    #[arg(long)]
    principal: Option<String>,
    /// The client's IP address (`*`: any; the default when adding).
    #[arg(long)]
    host: Option<String>,
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE, CLUSTER_ACTION or ALL.
    #[arg(long)]
    operation: Option<String>,
    /// ALLOW (the default when adding) or DENY.
    #[arg(long)]
    permission: Option<String>,
    /// The resource is this topic (or topic prefix).
    #[arg(long)]
    topic: Option<String>,
    /// The resource is this group (or group prefix).
    #[arg(long)]
    group: Option<String>,
    /// The resource is this transactional id (or prefix).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The resource is the cluster.
    #[arg(long)]
    cluster: bool,
    /// LITERAL (the default when adding; `*` names every resource),
    /// PREFIXED, or, to list and delete, ANY or MATCH (every ACL that
    /// applies to the name).
    #[arg(long)]
    pattern: Option<String>,
}

/// How the admin commands reach the broker.
#[derive(Debug, Args, Clone)]
struct AdminArgs {
    /// A broker's Kafka listener, HOST:PORT.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Log in with SASL PLAIN as this super user (omit on a PLAINTEXT
    /// listener).
    #[arg(long, global = true)]
    admin_user: Option<String>,
    /// The super user's password.
    #[arg(
        long,
        global = true,
        env = "METROBUS_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    admin_password: Option<String>,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a user or change its password (NAME@TENANT for a tenant's
    /// user): SCRAM-SHA-256 and SCRAM-SHA-512 credentials.
    Add {
        name: String,
        #[arg(long, env = "METROBUS_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value_t = 4096)]
        iterations: i32,
    },
    /// Remove a user's credentials.
    Delete { name: String },
    /// List users and their mechanisms.
    List,
}

#[derive(Debug, Subcommand)]
enum TenantAction {
    /// Tenants (from their users and topics), with user and topic counts.
    List,
    /// Create a tenant's first user, NAME@TENANT.
    Create {
        tenant: String,
        #[arg(long)]
        user: String,
        #[arg(long, env = "METROBUS_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Set or remove a tenant's quotas (one budget shared by all its
    /// users), or show them with no option. The tenant `<default>` is
    /// every tenant without its own quota (each with its own budget).
    Quota {
        tenant: String,
        /// Bytes per second the tenant's producers may send.
        #[arg(long)]
        producer_byte_rate: Option<u64>,
        /// Bytes per second the tenant's consumers may fetch.
        #[arg(long)]
        consumer_byte_rate: Option<u64>,
        /// Percentage of one request thread's time.
        #[arg(long)]
        request_percentage: Option<f64>,
        /// Remove these quotas (producer_byte_rate, consumer_byte_rate,
        /// request_percentage).
        #[arg(long, value_delimiter = ',')]
        remove: Vec<String>,
    },
    /// Every client quota: entity and values, one line each.
    Quotas,
}

#[derive(Debug, Args, Clone, Default)]
struct ServeArgs {
    /// TOML config file (see config/single.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Kafka listeners, `NAME://HOST:PORT,...` or HOST:PORT (`listeners`).
    #[arg(long)]
    listeners: Option<String>,
    /// HTTP listener for /metrics and health (`http.listener`).
    #[arg(long)]
    http_listener: Option<String>,
    /// Data directory (`log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This node's id (`node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// `durable` (fsync, group commit) or `replicated` (`log.flush.policy`).
    #[arg(long)]
    log_flush_policy: Option<String>,
    /// After binding, write `kafka=ADDR` and `http=ADDR` lines to this file.
    #[arg(long)]
    announce_file: Option<PathBuf>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = BrokerConfig::load(self.config.as_deref())?;
        let flags = [
            ("listeners", self.listeners.clone()),
            ("http.listener", self.http_listener.clone()),
            (
                "log.dirs",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("node.id", self.node_id.map(|n| n.to_string())),
            ("log.flush.policy", self.log_flush_policy.clone()),
        ];
        for (name, value) in flags {
            if let Some(value) = value {
                config
                    .set(name, &value)
                    .with_context(|| format!("from the command line flag for `{name}`"))?;
            }
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Config(args)) => {
            let config = args.load()?;
            for name in SETTING_NAMES {
                if let Some(value) = config.get(name) {
                    println!("{name} = {value:?}");
                }
            }
            Ok(())
        }
        Some(Command::Healthcheck { http }) => healthcheck(&http),
        Some(Command::User { action, connection }) => admin::user(action, &connection),
        Some(Command::Tenant { action, connection }) => admin::tenant(action, &connection),
        Some(Command::Acl { action, connection }) => admin::acl(action, &connection),
    }
}

/// The `user` and `tenant` commands.
mod admin {
    use std::collections::BTreeMap;

    use anyhow::{bail, Context};
    use bytes::Bytes;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::{
        AlterClientQuotasRequest, AlterUserScramCredentialsRequest,
        AlterUserScramCredentialsResponse, DescribeClientQuotasRequest,
        DescribeUserScramCredentialsRequest, MetadataRequest,
    };
    use kafka_protocol::protocol::StrBytes;
    use metrobus::admin_client::{AdminClient, Login};
    use metrobus::tenant::scram::{ScramCredential, ScramMechanism};
    use metrobus::tenant::{tenant_of_user, validate_tenant_name};

    use super::{AclAction, AdminArgs, TenantAction, UserAction};

    const MECHANISMS: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    fn connect(args: &AdminArgs) -> anyhow::Result<AdminClient> {
        let login = match (&args.admin_user, &args.admin_password) {
            (Some(user), Some(password)) => Some(Login {
                user: user.clone(),
                password: password.clone(),
            }),
            (Some(_), None) => {
                bail!("--admin-user needs --admin-password (or METROBUS_ADMIN_PASSWORD)")
            }
            _ => None,
        };
        AdminClient::connect(&args.bootstrap, login.as_ref())
    }

    fn check(response: AlterUserScramCredentialsResponse) -> anyhow::Result<()> {
        for result in response.results {
            metrobus::admin_client::check(result.error_code, result.error_message)
                .map_err(|e| anyhow::anyhow!("{}: {e}", result.user.as_str()))?;
        }
        Ok(())
    }

    fn add_user(
        client: &mut AdminClient,
        name: &str,
        password: &str,
        iterations: i32,
    ) -> anyhow::Result<()> {
        let upsertions = MECHANISMS
            .iter()
            .map(|m| {
                let salt = ScramCredential::new_random_salt();
                ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_string(name.to_owned()))
                    .with_mechanism(m.kafka_type())
                    .with_iterations(iterations)
                    .with_salted_password(Bytes::from(m.salted_password(
                        password.as_bytes(),
                        &salt,
                        iterations,
                    )))
                    .with_salt(Bytes::from(salt))
            })
            .collect();
        check(client.call(
            0,
            &AlterUserScramCredentialsRequest::default().with_upsertions(upsertions),
        )?)
    }

    /// Users and their mechanisms, by name.
    fn users(client: &mut AdminClient) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let response = client.call(0, &DescribeUserScramCredentialsRequest::default())?;
        metrobus::admin_client::check(response.error_code, response.error_message.clone())?;
        Ok(response
            .results
            .into_iter()
            .map(|r| {
                let mechanisms = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        ScramMechanism::from_kafka_type(c.mechanism)
                            .map(|m| format!("{}(iterations={})", m.name(), c.iterations))
                            .unwrap_or_else(|| format!("mechanism {}", c.mechanism))
                    })
                    .collect();
                (r.user.to_string(), mechanisms)
            })
            .collect())
    }

    pub(super) fn user(action: UserAction, args: &AdminArgs) -> anyhow::Result<()> {
        let mut client = connect(args)?;
        match action {
            UserAction::Add {
                name,
                password,
                iterations,
            } => {
                add_user(&mut client, &name, &password, iterations)?;
                println!("user {name}: SCRAM-SHA-256 and SCRAM-SHA-512 credentials set");
            }
            UserAction::Delete { name } => {
                let existing = users(&mut client)?;
                let Some(_) = existing.get(&name) else {
                    bail!("no user {name}");
                };
                let deletions = MECHANISMS
                    .iter()
                    .map(|m| {
                        ScramCredentialDeletion::default()
                            .with_name(StrBytes::from_string(name.clone()))
                            .with_mechanism(m.kafka_type())
                    })
                    .collect();
                let response = client.call(
                    0,
                    &AlterUserScramCredentialsRequest::default().with_deletions(deletions),
                )?;
                // A user with only one mechanism: the other deletion says
                // RESOURCE_NOT_FOUND and nothing is deleted; delete what
                // exists instead.
                if response.results.iter().any(|r| r.error_code == 91) {
                    let deletions = existing[&name]
                        .iter()
                        .filter_map(|m| m.split('(').next())
                        .filter_map(ScramMechanism::from_name)
                        .map(|m| {
                            ScramCredentialDeletion::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_mechanism(m.kafka_type())
                        })
                        .collect();
                    check(client.call(
                        0,
                        &AlterUserScramCredentialsRequest::default().with_deletions(deletions),
                    )?)?;
                } else {
                    check(response)?;
                }
                println!("user {name} deleted");
            }
            UserAction::List => {
                for (user, mechanisms) in users(&mut client)? {
                    println!("{user}\t{}", mechanisms.join(","));
                }
            }
        }
        Ok(())
    }

    pub(super) fn acl(action: AclAction, args: &AdminArgs) -> anyhow::Result<()> {
        super::acl::check(&action)?;
        let mut client = connect(args)?;
        super::acl::run(action, &mut client)
    }

    pub(super) fn tenant(action: TenantAction, args: &AdminArgs) -> anyhow::Result<()> {
        let mut client = connect(args)?;
        match action {
            TenantAction::List => {
                let mut tenants: BTreeMap<String, (usize, usize)> = BTreeMap::new();
                for user in users(&mut client)?.keys() {
                    if let Some(tenant) = tenant_of_user(user) {
                        tenants.entry(tenant.to_owned()).or_default().0 += 1;
                    }
                }
                let metadata = client
                    .call(1, &MetadataRequest::default().with_topics(None))
                    .context("listing topics")?;
                for topic in metadata.topics {
                    let name = topic.name.map(|n| n.to_string()).unwrap_or_default();
                    if let Some((tenant, _)) = name.split_once('.') {
                        if let Some(counts) = tenants.get_mut(tenant) {
                            counts.1 += 1;
                        }
                    }
                }
                println!("tenant\tusers\ttopics");
                for (tenant, (users, topics)) in tenants {
                    println!("{tenant}\t{users}\t{topics}");
                }
            }
            TenantAction::Create {
                tenant,
                user,
                password,
            } => {
                validate_tenant_name(&tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
                if user.contains('@') {
                    bail!("give the user's name without @TENANT");
                }
                let name = format!("{user}@{tenant}");
                add_user(
                    &mut client,
                    &name,
                    &password,
                    ScramMechanism::MIN_ITERATIONS,
                )?;
                println!("tenant {tenant}: user {name} created; its topics, groups and transactional ids live under `{tenant}.`");
            }
            TenantAction::Quota {
                tenant,
                producer_byte_rate,
                consumer_byte_rate,
                request_percentage,
                remove,
            } => {
                let name = (tenant != "<default>").then_some(tenant.clone());
                if let Some(name) = &name {
                    validate_tenant_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                let mut ops: Vec<OpData> = [
                    ("producer_byte_rate", producer_byte_rate.map(|v| v as f64)),
                    ("consumer_byte_rate", consumer_byte_rate.map(|v| v as f64)),
                    ("request_percentage", request_percentage),
                ]
                .into_iter()
                .filter_map(|(key, value)| {
                    value.map(|v| {
                        OpData::default()
                            .with_key(StrBytes::from_static_str(key))
                            .with_value(v)
                    })
                })
                .collect();
                ops.extend(remove.iter().map(|key| {
                    OpData::default()
                        .with_key(StrBytes::from_string(key.clone()))
                        .with_remove(true)
                }));
                if ops.is_empty() {
                    return quotas(&mut client, Some(&tenant));
                }
                let entry = EntryData::default()
                    .with_entity(vec![EntityData::default()
                        .with_entity_type(StrBytes::from_static_str("tenant"))
                        .with_entity_name(name.map(StrBytes::from_string))])
                    .with_ops(ops);
                let response = client.call(
                    1,
                    &AlterClientQuotasRequest::default().with_entries(vec![entry]),
                )?;
                for entry in response.entries {
                    metrobus::admin_client::check(entry.error_code, entry.error_message.clone())?;
                }
                println!("tenant {tenant}: quotas updated");
            }
            TenantAction::Quotas => quotas(&mut client, None)?,
        }
        Ok(())
    }

    /// Prints client quotas: a tenant's, or all of them.
    fn quotas(client: &mut AdminClient, tenant: Option<&str>) -> anyhow::Result<()> {
        let components = match tenant {
            None => Vec::new(),
            Some(tenant) => {
                let component =
                    ComponentData::default().with_entity_type(StrBytes::from_static_str("tenant"));
                vec![if tenant == "<default>" {
                    component.with_match_type(1).with_match(None)
                } else {
                    component
                        .with_match_type(0)
                        .with_match(Some(StrBytes::from_string(tenant.to_owned())))
                }]
            }
        };
        let response = client.call(
            1,
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(tenant.is_some()),
        )?;
        metrobus::admin_client::check(response.error_code, response.error_message.clone())?;
        for entry in response.entries.unwrap_or_default() {
            let entity: Vec<String> = entry
                .entity
                .iter()
                .map(|e| {
                    format!(
                        "{}={}",
                        e.entity_type.as_str(),
                        e.entity_name.as_deref().unwrap_or("<default>")
                    )
                })
                .collect();
            let values: Vec<String> = entry
                .values
                .iter()
                .map(|v| format!("{}={}", v.key.as_str(), v.value))
                .collect();
            println!("{}\t{}", entity.join(","), values.join(","));
        }
        Ok(())
    }
}

/// The `acl` command.
mod acl {
    use anyhow::{bail, Context};
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
    use kafka_protocol::protocol::StrBytes;
    use metrobus::tenant::acl::{
        code_of, operation, pattern_type, permission, resource_type, AclBinding, CLUSTER_NAME,
        OPERATION_NAMES, PATTERN_TYPE_NAMES, PERMISSION_NAMES,
    };

    use super::{AclAction, AclSpec};

    fn code(
        table: &[(i8, &str)],
        what: &str,
        name: &Option<String>,
        default: i8,
    ) -> anyhow::Result<i8> {
        match name {
            None => Ok(default),
            Some(name) => code_of(table, name).with_context(|| format!("unknown {what} `{name}`")),
        }
    }

    fn string(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_owned())
    }

    /// The resource type and name the spec names, if any.
    fn resource(spec: &AclSpec) -> anyhow::Result<(i8, Option<String>)> {
        let named = [
            spec.cluster,
            spec.topic.is_some(),
            spec.group.is_some(),
            spec.transactional_id.is_some(),
        ];
        if named.iter().filter(|n| **n).count() > 1 {
            bail!("name one resource: --topic, --group, --transactional-id or --cluster");
        }
        Ok(if spec.cluster {
            (resource_type::CLUSTER, Some(CLUSTER_NAME.to_owned()))
        } else if let Some(topic) = &spec.topic {
            (resource_type::TOPIC, Some(topic.clone()))
        } else if let Some(group) = &spec.group {
            (resource_type::GROUP, Some(group.clone()))
        } else if let Some(id) = &spec.transactional_id {
            (resource_type::TRANSACTIONAL_ID, Some(id.clone()))
        } else {
            (resource_type::ANY, None)
        })
    }

    /// A binding from a spec, defaults filled in (host `*`, ALLOW, LITERAL).
    fn binding(spec: &AclSpec) -> anyhow::Result<AclBinding> {
        let (kind, name) = resource(spec)?;
        let Some(name) = name else {
            bail!("name a resource: --topic, --group, --transactional-id or --cluster");
        };
        let Some(principal) = spec.principal.clone() else {
            bail!("--principal User:NAME is required");
        };
        let Some(op) = &spec.operation else {
            bail!("--operation is required");
        };
        let binding = AclBinding {
            resource_type: kind,
            resource_name: name,
            pattern_type: code(
                PATTERN_TYPE_NAMES,
                "pattern",
                &spec.pattern,
                pattern_type::LITERAL,
            )?,
            principal,
            host: spec.host.clone().unwrap_or_else(|| "*".to_owned()),
            operation: code(
                OPERATION_NAMES,
                "operation",
                &Some(op.clone()),
                operation::ANY,
            )?,
            permission: code(
                PERMISSION_NAMES,
                "permission",
                &spec.permission,
                permission::ALLOW,
            )?,
        };
        if let Some(reason) = binding.invalid_reason() {
            bail!("{reason}");
        }
        Ok(binding)
    }

    /// A filter from a spec: what is left out matches anything.
    fn filter(spec: &AclSpec) -> anyhow::Result<DeleteAclsFilter> {
        let (kind, name) = resource(spec)?;
        Ok(DeleteAclsFilter::default()
            .with_resource_type_filter(kind)
            .with_resource_name_filter(name.as_deref().map(string))
            .with_pattern_type_filter(code(
                PATTERN_TYPE_NAMES,
                "pattern",
                &spec.pattern,
                pattern_type::ANY,
            )?)
            .with_principal_filter(spec.principal.as_deref().map(string))
            .with_host_filter(spec.host.as_deref().map(string))
            .with_operation(code(
                OPERATION_NAMES,
                "operation",
                &spec.operation,
                operation::ANY,
            )?)
            .with_permission_type(code(
                PERMISSION_NAMES,
                "permission",
                &spec.permission,
                permission::ANY,
            )?))
    }

    fn failure(code: i16, message: Option<StrBytes>) -> anyhow::Error {
        anyhow::anyhow!(
            "{}",
            message
                .map(|m| m.to_string())
                .unwrap_or_else(|| format!("error {code}"))
        )
    }

    /// Refuses a malformed spec before connecting.
    pub(super) fn check(action: &AclAction) -> anyhow::Result<()> {
        match action {
            AclAction::Add(spec) => binding(spec).map(drop),
            AclAction::List(spec) | AclAction::Delete(spec) => filter(spec).map(drop),
        }
    }

    pub(super) fn run(
        action: AclAction,
        client: &mut metrobus::admin_client::AdminClient,
    ) -> anyhow::Result<()> {
        match action {
            AclAction::Add(spec) => {
                let b = binding(&spec)?;
                let creation = AclCreation::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(string(&b.resource_name))
                    .with_resource_pattern_type(b.pattern_type)
                    .with_principal(string(&b.principal))
                    .with_host(string(&b.host))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission);
                let response = client.call(
                    3,
                    &CreateAclsRequest::default().with_creations(vec![creation]),
                )?;
                for result in response.results {
                    if result.error_code != 0 {
                        return Err(failure(result.error_code, result.error_message));
                    }
                }
                println!("{b}");
            }
            AclAction::List(spec) => {
                let f = filter(&spec)?;
                let response = client.call(
                    3,
                    &DescribeAclsRequest::default()
                        .with_resource_type_filter(f.resource_type_filter)
                        .with_resource_name_filter(f.resource_name_filter)
                        .with_pattern_type_filter(f.pattern_type_filter)
                        .with_principal_filter(f.principal_filter)
                        .with_host_filter(f.host_filter)
                        .with_operation(f.operation)
                        .with_permission_type(f.permission_type),
                )?;
                if response.error_code != 0 {
                    return Err(failure(response.error_code, response.error_message));
                }
                for resource in response.resources {
                    for acl in resource.acls {
                        let b = AclBinding {
                            resource_type: resource.resource_type,
                            resource_name: resource.resource_name.to_string(),
                            pattern_type: resource.pattern_type,
                            principal: acl.principal.to_string(),
                            host: acl.host.to_string(),
                            operation: acl.operation,
                            permission: acl.permission_type,
                        };
                        println!("{b}");
                    }
                }
            }
            AclAction::Delete(spec) => {
                let f = filter(&spec)?;
                let response =
                    client.call(3, &DeleteAclsRequest::default().with_filters(vec![f]))?;
                for result in response.filter_results {
                    if result.error_code != 0 {
                        return Err(failure(result.error_code, result.error_message));
                    }
                    for m in result.matching_acls {
                        let b = AclBinding {
                            resource_type: m.resource_type,
                            resource_name: m.resource_name.to_string(),
                            pattern_type: m.pattern_type,
                            principal: m.principal.to_string(),
                            host: m.host.to_string(),
                            operation: m.operation,
                            permission: m.permission_type,
                        };
                        println!("deleted\t{b}");
                    }
                }
            }
        }
        Ok(())
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // openraft and chitchat narrate every election and gossip
            // round at info, and openraft logs every failed retry to a
            // down peer as an error, twice a second; our own cluster logs
            // and metrics say when a node is gone.
            EnvFilter::try_from_env("METROBUS_LOG").unwrap_or_else(|_| {
                EnvFilter::new(
                    "info,openraft=warn,openraft::replication=off,openraft::core::raft_core=off,\
                     openraft::engine=off,chitchat=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal: not in files or `docker logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("metrobus-worker")
        .build()?;
    runtime.block_on(async move {
        let running = metrobus::broker::start(config).await?;
        if let Some(path) = &args.announce_file {
            announce(path, &running)?;
        }
        wait_for_signal().await?;
        running.shutdown().await;
        anyhow::Ok(())
    })
}

/// Writes the bound addresses atomically (write, then rename), so a reader
/// that sees the file sees all of it.
/// `kafka=` is the first listener; `listener.NAME=` names each.
fn announce(
    path: &std::path::Path,
    running: &metrobus::broker::RunningBroker,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut text = format!(
        "kafka={}\nhttp={}\n",
        running.kafka_addr(),
        running.http_addr()
    );
    for (name, addr) in running.listener_addrs() {
        text.push_str(&format!("listener.{name}={addr}\n"));
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => info!("received SIGTERM"),
        _ = interrupt.recv() => info!("received SIGINT"),
    }
    Ok(())
}

fn healthcheck(http: &str) -> anyhow::Result<()> {
    let addr = http
        .parse()
        .with_context(|| format!("`{http}` is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response)?;
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "not ready: {}",
            response.lines().next().unwrap_or("no answer")
        )
    }
}
