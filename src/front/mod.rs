//! Front-ends: each turns its protocol's bytes into requests for [`crate::proxy`], and the
//! answers back into bytes. [`http`] speaks the DynamoDB HTTP JSON API, [`dax`] the DAX
//! protocol of DAX client applications, [`admin`] the admin listener's HTTP endpoints.

pub(crate) mod admin;
pub(crate) mod dax;
pub(crate) mod http;
