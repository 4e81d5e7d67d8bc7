/// The common name of a verified client certificate, put in each request's extensions by the TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertCommonName(pub String);
