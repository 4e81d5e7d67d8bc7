use super::*;

#[test]
fn grpc_codes_map_to_grpc_gateway_statuses() {
    assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
    assert_eq!(
        http_status(Code::FailedPrecondition),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
    assert_eq!(
        http_status(Code::Unavailable),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        http_status(Code::ResourceExhausted),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn error_body_is_etcd_34s_shape() {
    let status: Status = ServerError::EmptyKey.into();
    assert_eq!(
        String::from_utf8(error_body(&status)).unwrap(),
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
}
