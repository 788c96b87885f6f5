//! Which function calls keep a SELECT off the replicas.
//!
//! The built-in list holds functions that write, take locks, or only make sense on the primary or in
//! the caller's own session (`currval` on a replica fails with "not yet defined in this session").
//! Configuration adds to it (`routing.write_functions`). With `routing.unknown_functions_are_writes`,
//! any function not in [`KNOWN_READS`] counts as a write too, for schemas full of user functions that
//! write; issue 13 replaces guessing with volatility read from `pg_proc`.

use std::collections::HashSet;

/// Functions that must run on the primary (matched by name, case-insensitively, whatever the schema).
pub const WRITES: &[&str] = &[
    // sequences
    "nextval",
    "setval",
    "currval",
    "lastval",
    // advisory locks
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    // transaction ids and WAL positions of the primary
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_export_snapshot",
    "pg_logical_emit_message",
    // session state and notifications
    "set_config",
    "pg_notify",
    // large objects
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_open",
    "lo_close",
    "lowrite",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lo_truncate64",
    // server administration
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_import_system_collations",
    "dblink_exec",
];

/// Functions known not to write: what `unknown_functions_are_writes` still lets through to replicas.
pub const KNOWN_READS: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_append",
    "array_length",
    "array_position",
    "array_remove",
    "array_to_json",
    "array_to_string",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "cast",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "clock_timestamp",
    "coalesce",
    "concat",
    "concat_ws",
    "corr",
    "count",
    "cume_dist",
    "current_database",
    "current_date",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "date_part",
    "date_trunc",
    "decode",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "has_table_privilege",
    "initcap",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_query",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "json_agg",
    "json_array_elements",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "max",
    "md5",
    "min",
    "mod",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_column_size",
    "pg_database_size",
    "pg_get_viewdef",
    "pg_is_in_recovery",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_relation_size",
    "pg_size_pretty",
    "pg_sleep",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_typeof",
    "pg_wal_lsn_diff",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "random",
    "rank",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "timeofday",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim",
    "trunc",
    "unnest",
    "upper",
    "uuid_generate_v4",
    "gen_random_uuid",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "websearch_to_tsquery",
    "plainto_tsquery",
    "ts_rank",
    "ts_headline",
    "xmlagg",
];

/// The function policy a classifier applies.
#[derive(Debug, Clone)]
pub struct FunctionPolicy {
    writes: HashSet<String>,
    known_reads: HashSet<&'static str>,
    unknown_are_writes: bool,
}

impl FunctionPolicy {
    /// The built-in list plus `extra` write functions (names, any case).
    pub fn new(extra: &[String], unknown_are_writes: bool) -> FunctionPolicy {
        let writes = WRITES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(extra.iter().map(|s| s.to_ascii_lowercase()))
            .collect();
        FunctionPolicy {
            writes,
            known_reads: KNOWN_READS.iter().copied().collect(),
            unknown_are_writes,
        }
    }

    /// Whether a call to `name` (unqualified, as written) keeps the statement on the primary.
    pub fn is_write(&self, name: &str) -> bool {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.writes.contains(name) || (self.unknown_are_writes && !self.known_reads.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_and_configured_writes_any_case() {
        let p = FunctionPolicy::new(&["Audit_Log".into()], false);
        assert!(p.is_write("nextval"));
        assert!(p.is_write("NEXTVAL"));
        assert!(p.is_write("audit_log"));
        assert!(!p.is_write("my_report"));
        assert!(!p.is_write("count"));
    }

    #[test]
    fn unknown_functions_can_count_as_writes() {
        let p = FunctionPolicy::new(&[], true);
        assert!(p.is_write("my_report"));
        assert!(!p.is_write("count"));
        assert!(!p.is_write("Now"));
    }
}
