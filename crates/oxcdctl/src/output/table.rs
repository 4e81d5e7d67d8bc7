//! The `table` format (olekukonko/tablewriter with etcdctl's settings: upper-case centred
//! headers, right-aligned cells), and the rows that the simple format joins with ", ".

use oxcd_proto::etcdserverpb as pb;

use super::{DbStatus, EpHashKv, EpHealth, EpStatus};
use crate::golog::humanize_bytes;

/// Renders a table.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let header: Vec<String> = header
        .iter()
        .map(|h| h.replace(['_', '.'], " ").to_uppercase())
        .collect();
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell));
            }
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(pad - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {}{} |", " ".repeat(w - width(cell)), cell));
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&rule);
    }
    out.into_bytes()
}

const MEMBER_HEADER: [&str; 6] = [
    "ID",
    "Status",
    "Name",
    "Peer Addrs",
    "Client Addrs",
    "Is Learner",
];

/// Rows of `member list`.
pub(crate) fn member_list_rows(r: &pb::MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

/// `member list -w table`.
pub(crate) fn member_list(r: &pb::MemberListResponse) -> Vec<u8> {
    render(&MEMBER_HEADER, &member_list_rows(r))
}

/// `endpoint health -w table`.
pub(crate) fn endpoint_health(r: &[EpHealth]) -> Vec<u8> {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|h| {
            vec![
                h.ep.clone(),
                h.health.to_string(),
                h.took.clone(),
                h.error.clone(),
            ]
        })
        .collect();
    render(&["endpoint", "health", "took", "error"], &rows)
}

/// Rows of `endpoint status`.
pub(crate) fn endpoint_status_rows(r: &[EpStatus]) -> Vec<Vec<String>> {
    r.iter()
        .map(|e| {
            let s = &e.resp;
            let member = s.header.as_ref().map(|h| h.member_id).unwrap_or_default();
            vec![
                e.ep.clone(),
                format!("{member:x}"),
                s.version.clone(),
                humanize_bytes(s.db_size as u64),
                (s.leader == member).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
            ]
        })
        .collect()
}

/// `endpoint status -w table`.
pub(crate) fn endpoint_status(r: &[EpStatus]) -> Vec<u8> {
    render(
        &[
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        ],
        &endpoint_status_rows(r),
    )
}

/// Rows of `endpoint hashkv`.
pub(crate) fn endpoint_hashkv_rows(r: &[EpHashKv]) -> Vec<Vec<String>> {
    r.iter()
        .map(|e| vec![e.ep.clone(), e.resp.hash.to_string()])
        .collect()
}

/// `endpoint hashkv -w table`.
pub(crate) fn endpoint_hashkv(r: &[EpHashKv]) -> Vec<u8> {
    render(&["endpoint", "hash"], &endpoint_hashkv_rows(r))
}

/// Rows of `snapshot status`.
pub(crate) fn db_status_rows(r: &DbStatus) -> Vec<Vec<String>> {
    vec![vec![
        format!("{:x}", r.hash),
        r.revision.to_string(),
        r.total_key.to_string(),
        humanize_bytes(r.total_size),
    ]]
}

/// `snapshot status -w table`.
pub(crate) fn db_status(r: &DbStatus) -> Vec<u8> {
    render(
        &["hash", "revision", "total keys", "total size"],
        &db_status_rows(r),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_table_matches_etcdctl() {
        let r = pb::MemberListResponse {
            members: vec![pb::Member {
                id: 0x99547a5679729c41,
                name: "s1".into(),
                peer_ur_ls: vec!["http://127.0.0.1:24391".into()],
                client_ur_ls: vec!["http://127.0.0.1:24390".into()],
                is_learner: false,
            }],
            ..Default::default()
        };
        let expected = "\
+------------------+---------+------+------------------------+------------------------+------------+
|        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+------+------------------------+------------------------+------------+
| 99547a5679729c41 | started |   s1 | http://127.0.0.1:24391 | http://127.0.0.1:24390 |      false |
+------------------+---------+------+------------------------+------------------------+------------+
";
        assert_eq!(String::from_utf8(member_list(&r)).unwrap(), expected);
    }

    #[test]
    fn status_table_matches_etcdctl() {
        let r = [EpStatus {
            ep: "127.0.0.1:24390".into(),
            resp: pb::StatusResponse {
                header: Some(pb::ResponseHeader {
                    member_id: 0x99547a5679729c41,
                    ..Default::default()
                }),
                version: "3.4.23".into(),
                db_size: 20480,
                leader: 0x99547a5679729c41,
                raft_index: 9,
                raft_term: 2,
                raft_applied_index: 9,
                ..Default::default()
            },
        }];
        let expected = "\
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
| 127.0.0.1:24390 | 99547a5679729c41 |  3.4.23 |   20 kB |      true |      false |         2 |          9 |                  9 |        |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
";
        assert_eq!(String::from_utf8(endpoint_status(&r)).unwrap(), expected);
    }

    #[test]
    fn hashkv_table_matches_etcdctl() {
        let r = [EpHashKv {
            ep: "127.0.0.1:24390".into(),
            resp: pb::HashKvResponse {
                hash: 3581052765,
                ..Default::default()
            },
        }];
        let expected = "\
+-----------------+------------+
|    ENDPOINT     |    HASH    |
+-----------------+------------+
| 127.0.0.1:24390 | 3581052765 |
+-----------------+------------+
";
        assert_eq!(String::from_utf8(endpoint_hashkv(&r)).unwrap(), expected);
    }
}
