use std::time::Duration;

use oxcd_proto::etcdserverpb::AuthUserAddRequest;

use super::*;
use crate::token::SimpleTokens;

fn open(dir: &std::path::Path) -> (Store, AuthStore) {
    let store = Store::open(&dir.join("db")).unwrap();
    let tokens = TokenProvider::Simple(SimpleTokens::new(Duration::from_secs(60)));
    let auth = AuthStore::load(&store, tokens, 4).unwrap();
    (store, auth)
}

fn add_user(a: &AuthStore, s: &Store, name: &str, password: &str) {
    let hashed = a.hash_password(password).unwrap();
    a.user_add(
        s,
        &AuthUserAddRequest {
            name: name.into(),
            hashed_password: hashed,
            ..Default::default()
        },
    )
    .unwrap();
}

fn grant(a: &AuthStore, s: &Store, role: &str, typ: PermType, key: &[u8], end: &[u8]) {
    a.role_grant_permission(
        s,
        &AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: typ as i32,
                key: key.to_vec(),
                range_end: end.to_vec(),
            }),
        },
    )
    .unwrap();
}

#[test]
fn enable_needs_root_with_role_root_and_root_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, a) = open(tmp.path());
    assert_eq!(a.revision(), 1);
    assert_eq!(a.enable(&s), Err(AuthError::RootUserNotExist));
    add_user(&a, &s, "root", "pw");
    assert_eq!(a.enable(&s), Err(AuthError::RootRoleNotExist));
    a.user_grant_role(&s, "root", "root").unwrap();
    a.enable(&s).unwrap();
    assert!(a.is_enabled());
    assert_eq!(a.user_delete(&s, "root"), Err(AuthError::InvalidAuthMgmt));
    assert_eq!(
        a.user_revoke_role(&s, "root", "root"),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(a.role_delete(&s, "root"), Err(AuthError::InvalidAuthMgmt));
    let rev = a.revision();
    a.disable(&s).unwrap();
    assert_eq!(a.revision(), rev + 1);
    a.user_revoke_role(&s, "root", "root").unwrap();
}

#[test]
fn passwords_tokens_and_no_password_users() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, a) = open(tmp.path());
    add_user(&a, &s, "root", "rootpw");
    a.user_grant_role(&s, "root", "root").unwrap();
    assert_eq!(
        a.check_password("root", "rootpw"),
        Err(AuthError::AuthNotEnabled)
    );
    a.enable(&s).unwrap();
    assert_eq!(a.check_password("root", "nope"), Err(AuthError::AuthFailed));
    assert_eq!(a.check_password("ghost", "x"), Err(AuthError::AuthFailed));
    let rev = a.check_password("root", "rootpw").unwrap();
    assert_eq!(rev, a.revision());
    a.user_add(
        &s,
        &AuthUserAddRequest {
            name: "np".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(a.check_password("np", ""), Err(AuthError::NoPasswordUser));
    assert_eq!(a.authenticate("np", "p", 5), Err(AuthError::AuthFailed));
    let token = a.authenticate("root", "pfx", 9).unwrap();
    assert_eq!(token, "pfx.9");
    assert_eq!(a.info_from_token(&token).unwrap().username, "root");
    // A new password drops the user's tokens.
    let h = a.hash_password("new").unwrap();
    assert!(h.starts_with("$2a$04$"), "etcd's bcrypt form: {h}");
    a.user_change_password(&s, "root", &h).unwrap();
    assert!(a.info_from_token(&token).is_none());
    a.check_password("root", "new").unwrap();
}

#[test]
fn permissions_follow_roles_and_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, a) = open(tmp.path());
    add_user(&a, &s, "root", "r");
    a.user_grant_role(&s, "root", "root").unwrap();
    add_user(&a, &s, "u", "p");
    a.role_add(&s, "r1").unwrap();
    assert_eq!(a.role_add(&s, "r1"), Err(AuthError::RoleAlreadyExist));
    assert_eq!(a.role_add(&s, ""), Err(AuthError::RoleEmpty));
    grant(&a, &s, "r1", PermType::Readwrite, b"foo/", b"foo0");
    grant(&a, &s, "r1", PermType::Read, b"bar", b"");
    a.user_grant_role(&s, "u", "r1").unwrap();
    assert_eq!(
        a.user_grant_role(&s, "u", "nope"),
        Err(AuthError::RoleNotFound)
    );
    let info = |rev| AuthInfo {
        username: "u".into(),
        revision: rev,
    };
    let rev = a.revision();
    // Disabled: everything passes.
    a.is_op_permitted(&info(0), b"x", b"", PermType::Write)
        .unwrap();
    a.enable(&s).unwrap();
    assert_eq!(
        a.is_op_permitted(&info(0), b"x", b"", PermType::Read),
        Err(AuthError::UserEmpty)
    );
    a.is_op_permitted(&info(rev), b"foo/a", b"", PermType::Write)
        .unwrap();
    a.is_op_permitted(&info(rev), b"bar", b"", PermType::Read)
        .unwrap();
    assert_eq!(
        a.is_op_permitted(&info(rev), b"bar", b"", PermType::Write),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        a.is_admin_permitted(Some(&info(rev))),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(a.is_admin_permitted(None), Err(AuthError::UserEmpty));
    let root = AuthInfo {
        username: "root".into(),
        revision: rev,
    };
    a.is_admin_permitted(Some(&root)).unwrap();
    a.is_op_permitted(&root, b"anything", b"\0", PermType::Write)
        .unwrap();
    // A change bumps the revision: the old one is refused.
    a.role_revoke_permission(
        &s,
        &AuthRoleRevokePermissionRequest {
            role: "r1".into(),
            key: b"bar".to_vec(),
            range_end: Vec::new(),
        },
    )
    .unwrap();
    assert_eq!(
        a.is_op_permitted(&info(rev), b"foo/a", b"", PermType::Write),
        Err(AuthError::AuthOldRevision)
    );
    let rev = a.revision();
    assert_eq!(
        a.is_op_permitted(&info(rev), b"bar", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
    // Deleting the role takes it from the user.
    a.role_delete(&s, "r1").unwrap();
    assert!(a.user_get("u").unwrap().roles.is_empty());
    assert_eq!(
        a.is_op_permitted(&info(a.revision()), b"foo/a", b"", PermType::Read),
        Err(AuthError::PermissionDenied)
    );
}

#[test]
fn state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (s, a) = open(tmp.path());
        add_user(&a, &s, "root", "r");
        a.user_grant_role(&s, "root", "root").unwrap();
        a.role_add(&s, "b").unwrap();
        grant(&a, &s, "b", PermType::Write, b"k", b"\0");
        grant(&a, &s, "b", PermType::Read, b"k", b"\0");
        assert_eq!(
            a.role_get("b").unwrap().perm.len(),
            1,
            "same range: type replaced"
        );
        a.enable(&s).unwrap();
        s.commit(true).unwrap();
    }
    let (_s, a) = open(tmp.path());
    assert!(a.is_enabled());
    assert_eq!(a.user_list(), vec!["root".to_string()]);
    assert_eq!(a.role_list(), vec!["b".to_string()]);
    assert_eq!(a.revision(), 6);
    a.check_password("root", "r").unwrap();
}
