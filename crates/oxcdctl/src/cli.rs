//! Command line: etcdctl's global flags (each also read from its `ETCDCTL_*` variable, as
//! etcdctl does) and its commands, plus oxcdctl's own (`service`, `completion`, and the
//! `set`/`ls` habits of etcdctl v2).

use clap::{ArgAction, Args, Parser, Subcommand};

/// etcdctl-compatible client for oxcd and etcd (v3 API).
#[derive(Debug, Parser)]
#[command(
    name = "oxcdctl",
    version,
    infer_subcommands = true,
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    /// Global flags.
    #[command(flatten)]
    pub global: GlobalFlags,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalFlags {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub debug: bool,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple"
    )]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_DIAL_TIMEOUT",
        default_value = "2s"
    )]
    pub dial_timeout: String,
    /// timeout for short running command (excluding dial timeout)
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_COMMAND_TIMEOUT",
        default_value = "5s"
    )]
    pub command_timeout: String,
    /// keepalive time for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_KEEPALIVE_TIME",
        default_value = "2s"
    )]
    pub keepalive_time: String,
    /// keepalive timeout for client connections
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_KEEPALIVE_TIMEOUT",
        default_value = "6s"
    )]
    pub keepalive_timeout: String,
    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    pub insecure_discovery: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Puts the given key into the store
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    Txn {
        /// Input transaction in interactive mode
        #[arg(short, long)]
        interactive: bool,
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Compacts the event history in etcd
    Compaction {
        /// 'true' to wait for compaction to physically remove all old revisions
        #[arg(long)]
        physical: bool,
        /// The revision
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag {
        /// use all endpoints from the cluster member list
        #[arg(long)]
        cluster: bool,
        /// Optional. If present, defragments a data directory not in use by etcd.
        #[arg(long)]
        data_dir: Option<String>,
    },
    /// Endpoint related commands
    Endpoint {
        /// use all endpoints from the cluster member list
        #[arg(long, global = true)]
        cluster: bool,
        /// The endpoint command.
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Transfers leadership to another etcd cluster member.
    MoveLeader {
        /// transferee member id (hex)
        args: Vec<String>,
    },
    /// Watches events stream on keys or prefixes
    Watch(WatchArgs),
    /// Prints the version of etcdctl
    Version,
    /// Lease related commands
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Membership related commands
    #[command(subcommand)]
    Member(MemberCommand),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(MakeMirrorArgs),
    /// Acquires a named lock
    Lock {
        /// timeout for session
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        /// lockname [exec-command arg1 arg2 ...]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Observes and participates in leader election
    Elect {
        /// observation mode
        #[arg(short, long)]
        listen: bool,
        /// election-name [proposal]
        args: Vec<String>,
    },
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(AuthCommand),
    /// User related commands
    #[command(subcommand)]
    User(UserCommand),
    /// Role related commands
    #[command(subcommand)]
    Role(RoleCommand),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(CheckCommand),
    /// etcdctl v2 habit: `set <key> <value>` is `put <key> <value>`
    Set {
        /// key and value
        args: Vec<String>,
    },
    /// etcdctl v2 habit: `ls [prefix]` is `get --prefix --keys-only <prefix>`
    Ls {
        /// the prefix (default: every key)
        args: Vec<String>,
    },
    /// Service registry: register an instance, list and follow instances
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        /// the shell
        shell: clap_complete::Shell,
    },
}

/// `get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

/// `put`.
#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
    /// <key> <value>
    pub args: Vec<String>,
}

/// `del`.
#[derive(Debug, Args)]
pub(crate) struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

/// `watch`.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct WatchArgs {
    /// Interactive mode
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    pub prev_kv: bool,
    /// [key or prefix] [range_end]
    pub args: Vec<String>,
    /// [--] [exec-command arg1 arg2 ...]
    #[arg(last = true)]
    pub exec: Vec<String>,
}

/// `make-mirror`.
#[derive(Debug, Args)]
pub(crate) struct MakeMirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long)]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long)]
    pub dest_cert: Option<String>,
    /// Identify secure client using this TLS key file
    #[arg(long)]
    pub dest_key: Option<String>,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long)]
    pub dest_cacert: Option<String>,
    /// Disable transport security for client connections
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    pub dest_insecure_transport: bool,
    /// <destination>
    pub args: Vec<String>,
}

/// `alarm`.
#[derive(Debug, Subcommand)]
pub(crate) enum AlarmCommand {
    /// Disarms all alarms
    Disarm {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Lists all alarms
    List {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
}

/// `endpoint`.
#[derive(Debug, Subcommand)]
pub(crate) enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// `lease`.
#[derive(Debug, Subcommand)]
pub(crate) enum LeaseCommand {
    /// Creates leases
    Grant {
        /// <ttl>
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Revokes leases
    Revoke {
        /// <leaseID>
        args: Vec<String>,
    },
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
        /// <leaseID>
        args: Vec<String>,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
        /// <leaseID>
        args: Vec<String>,
    },
}

/// `member`.
#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// Adds a member into the cluster
    Add {
        /// comma separated peer URLs for the new member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
        /// <memberName>
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove {
        /// <memberID>
        args: Vec<String>,
    },
    /// Updates a member in the cluster
    Update {
        /// comma separated peer URLs for the updated member.
        #[arg(long, default_value = "")]
        peer_urls: String,
        /// <memberID>
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    List,
    /// Promotes a non-voting member in the cluster
    Promote {
        /// <memberID>
        args: Vec<String>,
    },
}

/// `snapshot`.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        /// <filename>
        args: Vec<String>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(Box<RestoreArgs>),
    /// Gets backend snapshot status of a given file
    Status {
        /// <filename>
        args: Vec<String>,
    },
}

/// `snapshot restore`: etcdctl 3.4's flags, plus etcdutl 3.5's `--bump-revision` and
/// `--mark-compacted`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// <filename>
    pub args: Vec<String>,
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub skip_hash_check: bool,
    /// How much to increase the latest revision after restore
    #[arg(long, default_value_t = 0)]
    pub bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub mark_compacted: bool,
}

/// `auth`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Enables authentication
    Enable {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Disables authentication
    Disable {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
}

/// `user`.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a new user
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long)]
        no_password: bool,
        /// <user name or user:password>
        args: Vec<String>,
    },
    /// Deletes a user
    Delete {
        /// <user name>
        args: Vec<String>,
    },
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Lists all users
    List {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Changes password of user
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
        interactive: bool,
        /// <user name>
        args: Vec<String>,
    },
    /// Grants a role to a user
    GrantRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
    /// Revokes a role from a user
    RevokeRole {
        /// <user name> <role name>
        args: Vec<String>,
    },
}

/// `role`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// Adds a new role
    Add {
        /// <role name>
        args: Vec<String>,
    },
    /// Deletes a role
    Delete {
        /// <role name>
        args: Vec<String>,
    },
    /// Gets detailed information of a role
    Get {
        /// <role name>
        args: Vec<String>,
    },
    /// Lists all roles
    List {
        /// (no arguments)
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Grants a key to a role
    GrantPermission {
        /// grant a prefix permission
        #[arg(long)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        /// <role name> <permission type> <key> [endkey]
        args: Vec<String>,
    },
    /// Revokes a key from a role
    RevokePermission {
        /// revoke a prefix permission
        #[arg(long)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        /// <role name> <key> [endkey]
        args: Vec<String>,
    },
}

/// `check`.
#[derive(Debug, Subcommand)]
pub(crate) enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf {
        /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
        #[arg(long, default_value = "s")]
        load: String,
        /// The prefix for writing the performance check's keys.
        #[arg(long, default_value = "/etcdctl-check-perf/")]
        prefix: String,
        /// Compact storage with last revision after test is finished.
        #[arg(long = "auto-compact")]
        auto_compact: bool,
        /// Defragment storage after test is finished.
        #[arg(long = "auto-defrag")]
        auto_defrag: bool,
    },
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    ///
    /// If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.
    Datascale {
        /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
        #[arg(long, default_value = "s")]
        load: String,
        /// The prefix for writing the datascale check's keys.
        #[arg(long, default_value = "/etcdctl-check-datascale/")]
        prefix: String,
        /// Compact storage with last revision after test is finished.
        #[arg(long = "auto-compact")]
        auto_compact: bool,
        /// Defragment storage after test is finished.
        #[arg(long = "auto-defrag")]
        auto_defrag: bool,
    },
}

/// `service`: oxcdctl's service registry commands (etcd's `naming/endpoints` layout:
/// key `<name>/<address>`, value `{"Op":0,"Addr":"<address>","Metadata":...}`).
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Registers <address> under <name> and keeps it alive until Ctrl-C, then deregisters
    Register {
        /// lease TTL in seconds
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        /// metadata key=value (repeatable)
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// the service name
        name: String,
        /// the instance's address (host:port)
        address: String,
    },
    /// Lists the live instances of <name>; --watch follows changes
    List {
        /// keep running and print each change
        #[arg(long)]
        watch: bool,
        /// the service name
        name: String,
    },
}
