//! flyteidl.core messages reachable from `LiteralMap`, and the
//! google.protobuf ones they use, written by hand for prost. Field numbers
//! are flyteidl 1.16's (from `literals_pb2.DESCRIPTOR` / `types_pb2`).
//! These are for decoding what clients send; the key's canonical bytes are
//! written by `canonical.rs`, which follows Python protobuf's encoder.

use std::collections::BTreeMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralMap {
    #[prost(btree_map = "string, message", tag = "1")]
    pub literals: BTreeMap<String, Literal>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Literal {
    #[prost(oneof = "literal::Value", tags = "1, 2, 3, 8")]
    pub value: Option<literal::Value>,
    #[prost(string, tag = "4")]
    pub hash: String,
    #[prost(btree_map = "string, string", tag = "5")]
    pub metadata: BTreeMap<String, String>,
}

pub mod literal {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        Scalar(super::Scalar),
        #[prost(message, tag = "2")]
        Collection(super::LiteralCollection),
        #[prost(message, tag = "3")]
        Map(super::LiteralMap),
        #[prost(message, tag = "8")]
        OffloadedMetadata(super::LiteralOffloadedMetadata),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralCollection {
    #[prost(message, repeated, tag = "1")]
    pub literals: Vec<Literal>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralOffloadedMetadata {
    #[prost(string, tag = "1")]
    pub uri: String,
    #[prost(uint64, tag = "2")]
    pub size_bytes: u64,
    #[prost(message, optional, tag = "3")]
    pub inferred_type: Option<LiteralType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Scalar {
    #[prost(oneof = "scalar::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub value: Option<scalar::Value>,
}

pub mod scalar {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        Primitive(super::Primitive),
        #[prost(message, tag = "2")]
        Blob(super::Blob),
        #[prost(message, tag = "3")]
        Binary(super::Binary),
        #[prost(message, tag = "4")]
        Schema(super::Schema),
        #[prost(message, tag = "5")]
        NoneType(super::Void),
        #[prost(message, tag = "6")]
        Error(super::Error),
        #[prost(message, tag = "7")]
        Generic(super::Struct),
        #[prost(message, tag = "8")]
        StructuredDataset(super::StructuredDataset),
        #[prost(message, tag = "9")]
        Union(Box<super::Union>),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Primitive {
    #[prost(oneof = "primitive::Value", tags = "1, 2, 3, 4, 5, 6")]
    pub value: Option<primitive::Value>,
}

pub mod primitive {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(int64, tag = "1")]
        Integer(i64),
        #[prost(double, tag = "2")]
        FloatValue(f64),
        #[prost(string, tag = "3")]
        StringValue(String),
        #[prost(bool, tag = "4")]
        Boolean(bool),
        #[prost(message, tag = "5")]
        Datetime(super::Timestamp),
        #[prost(message, tag = "6")]
        Duration(super::Duration),
    }
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Blob {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<BlobMetadata>,
    #[prost(string, tag = "3")]
    pub uri: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobMetadata {
    #[prost(message, optional, tag = "1")]
    pub r#type: Option<BlobType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobType {
    #[prost(string, tag = "1")]
    pub format: String,
    /// BlobDimensionality: SINGLE = 0, MULTIPART = 1.
    #[prost(int32, tag = "2")]
    pub dimensionality: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Binary {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
    #[prost(string, tag = "2")]
    pub tag: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub uri: String,
    #[prost(message, optional, tag = "3")]
    pub r#type: Option<SchemaType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaType {
    #[prost(message, repeated, tag = "3")]
    pub columns: Vec<SchemaColumn>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaColumn {
    #[prost(string, tag = "1")]
    pub name: String,
    /// SchemaColumnType: INTEGER 0, FLOAT 1, STRING 2, BOOLEAN 3, DATETIME 4, DURATION 5.
    #[prost(int32, tag = "2")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Void {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    #[prost(string, tag = "1")]
    pub failed_node_id: String,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructuredDataset {
    #[prost(string, tag = "1")]
    pub uri: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<StructuredDatasetMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructuredDatasetMetadata {
    #[prost(message, optional, tag = "1")]
    pub structured_dataset_type: Option<StructuredDatasetType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructuredDatasetType {
    #[prost(message, repeated, tag = "1")]
    pub columns: Vec<DatasetColumn>,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub external_schema_type: String,
    #[prost(bytes = "vec", tag = "4")]
    pub external_schema_bytes: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DatasetColumn {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub literal_type: Option<LiteralType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Union {
    #[prost(message, optional, tag = "1")]
    pub value: Option<Literal>,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<LiteralType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralType {
    #[prost(oneof = "literal_type::Type", tags = "1, 2, 3, 4, 5, 7, 8, 10")]
    pub r#type: Option<literal_type::Type>,
    #[prost(message, optional, tag = "6")]
    pub metadata: Option<Struct>,
    #[prost(message, optional, tag = "9")]
    pub annotation: Option<TypeAnnotation>,
    #[prost(message, optional, tag = "11")]
    pub structure: Option<TypeStructure>,
}

pub mod literal_type {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Type {
        /// SimpleType: NONE 0, INTEGER 1, FLOAT 2, STRING 3, BOOLEAN 4,
        /// DATETIME 5, DURATION 6, BINARY 7, ERROR 8, STRUCT 9.
        #[prost(int32, tag = "1")]
        Simple(i32),
        #[prost(message, tag = "2")]
        Schema(super::SchemaType),
        #[prost(message, tag = "3")]
        CollectionType(Box<super::LiteralType>),
        #[prost(message, tag = "4")]
        MapValueType(Box<super::LiteralType>),
        #[prost(message, tag = "5")]
        Blob(super::BlobType),
        #[prost(message, tag = "7")]
        EnumType(super::EnumType),
        #[prost(message, tag = "8")]
        StructuredDatasetType(super::StructuredDatasetType),
        #[prost(message, tag = "10")]
        UnionType(super::UnionType),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EnumType {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UnionType {
    #[prost(message, repeated, tag = "1")]
    pub variants: Vec<LiteralType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeAnnotation {
    #[prost(message, optional, tag = "1")]
    pub annotations: Option<Struct>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeStructure {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(btree_map = "string, message", tag = "2")]
    pub dataclass_type: BTreeMap<String, LiteralType>,
}

/// google.protobuf.Struct.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, StructValue>,
}

/// google.protobuf.Value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StructValue {
    #[prost(oneof = "struct_value::Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<struct_value::Kind>,
}

pub mod struct_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// google.protobuf.NullValue (always 0).
        #[prost(int32, tag = "1")]
        NullValue(i32),
        #[prost(double, tag = "2")]
        NumberValue(f64),
        #[prost(string, tag = "3")]
        StringValue(String),
        #[prost(bool, tag = "4")]
        BoolValue(bool),
        #[prost(message, tag = "5")]
        StructValue(super::Struct),
        #[prost(message, tag = "6")]
        ListValue(super::ListValue),
    }
}

/// google.protobuf.ListValue.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<StructValue>,
}
