//! Who is calling: the connection kind and the roles of the client certificate.
//!
//! On an mTLS connection the roles are the Subject Organization values of the verified
//! client certificate (`os:admin`, `os:operator`, `os:reader`, `os:etcd:backup`; unknown
//! values are ignored), read with x509-parser. A connection without a certificate is a
//! maintenance-mode connection (server-only TLS). [`Access`] is the role table of
//! `talos-api.md` §1.6, checked against Talos's own (`rules` in
//! `internal/app/machined/pkg/system/services/machined.go`, v1.11.5): `os:etcd:backup` may
//! take a snapshot and read etcd (EtcdMemberList, EtcdStatus, EtcdAlarmList) and nothing else.
//! A denied call gets `PermissionDenied "not authorized"` as apid answers.

use std::collections::BTreeSet;

use tonic::{Request, Status};

use crate::sim::pki::Role;

/// How the caller is connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conn {
    /// mTLS with a client certificate signed by the OS CA, carrying these roles.
    Secure(BTreeSet<Role>),
    /// Server-only TLS to a node in maintenance mode (no client certificate).
    Maintenance,
}

/// What a method requires (`talos-api.md` §1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reader, operator or admin (Version, ServiceList, Disks, Events, COSI reads).
    Read,
    /// Reader, operator, admin or etcd:backup (Etcd{MemberList,Status,AlarmList}): Talos lets
    /// the backup role read what it needs to judge a snapshot.
    EtcdRead,
    /// Operator or admin (Reboot, Shutdown).
    Operate,
    /// Operator, admin or etcd:backup (EtcdSnapshot).
    Snapshot,
    /// Admin only (ApplyConfiguration, Bootstrap, Reset, Upgrade, Read, Kubeconfig,
    /// Etcd{Recover,RemoveMemberByID,LeaveCluster,ForfeitLeadership}, sensitive COSI types).
    Admin,
}

impl Access {
    fn allows(self, roles: &BTreeSet<Role>) -> bool {
        let any = |rs: &[Role]| rs.iter().any(|r| roles.contains(r));
        match self {
            Access::Read => any(&[Role::Admin, Role::Operator, Role::Reader]),
            Access::EtcdRead => any(&[Role::Admin, Role::Operator, Role::Reader, Role::EtcdBackup]),
            Access::Operate => any(&[Role::Admin, Role::Operator]),
            Access::Snapshot => any(&[Role::Admin, Role::Operator, Role::EtcdBackup]),
            Access::Admin => any(&[Role::Admin]),
        }
    }
}

/// The roles in a DER certificate's Subject Organization.
pub fn roles_of_cert(der: &[u8]) -> BTreeSet<Role> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return BTreeSet::new();
    };
    cert.subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter_map(Role::from_org)
        .collect()
}

/// The connection kind of a request (from the TLS info tonic attaches).
pub fn conn_of<T>(req: &Request<T>) -> Conn {
    match req.peer_certs() {
        Some(certs) if !certs.is_empty() => Conn::Secure(roles_of_cert(certs[0].as_ref())),
        _ => Conn::Maintenance,
    }
}

/// Checks `access` for `conn`. Maintenance connections are not role-checked here: the
/// maintenance server implements only a few methods, which the model enforces.
pub fn authorize(conn: &Conn, access: Access) -> Result<(), Status> {
    match conn {
        Conn::Secure(roles) if !access.allows(roles) => {
            Err(Status::permission_denied("not authorized"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        let reader: BTreeSet<Role> = [Role::Reader].into();
        let op: BTreeSet<Role> = [Role::Operator].into();
        let backup: BTreeSet<Role> = [Role::EtcdBackup].into();
        assert!(Access::Read.allows(&reader));
        assert!(!Access::Operate.allows(&reader));
        assert!(Access::Operate.allows(&op));
        assert!(!Access::Admin.allows(&op));
        assert!(Access::Snapshot.allows(&backup));
        assert!(!Access::Read.allows(&backup));
        assert!(!Access::Operate.allows(&backup));
        assert!(!Access::Admin.allows(&backup));
        // As Talos v1.11.5's machined rules: the backup role reads etcd, the reader does not
        // snapshot.
        assert!(Access::EtcdRead.allows(&backup));
        assert!(Access::EtcdRead.allows(&reader));
        assert!(!Access::Snapshot.allows(&reader));
        assert!(Access::Admin.allows(&[Role::Admin].into()));
    }
}
