//! The part of ONNX's `onnx.proto` (proto2) that the importer reads, as `prost` messages written
//! by hand with the official field numbers: no `protoc` and no build script. The decoder skips
//! every field not listed here (opsets, value infos, docs, sub-graphs in attributes, ...).
//!
//! Plain data and nothing else: the test fixtures (`tests/common/onnx.rs`) compile this file too,
//! so that the tiny ONNX exports they write are these same messages.

use prost::bytes::Bytes;

/// `ModelProto`: a model file.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    /// The graph (`graph = 7`).
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<GraphProto>,
}

/// `GraphProto`: the nodes and the constant tensors of a graph.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GraphProto {
    /// The nodes, in topological order (`node = 1`).
    #[prost(message, repeated, tag = "1")]
    pub(crate) node: Vec<NodeProto>,
    /// The named constant tensors: the weights (`initializer = 5`).
    #[prost(message, repeated, tag = "5")]
    pub(crate) initializer: Vec<TensorProto>,
}

/// `NodeProto`: one operator applied to named values.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NodeProto {
    /// The names of the values it reads (`input = 1`).
    #[prost(string, repeated, tag = "1")]
    pub(crate) input: Vec<String>,
    /// The names of the values it writes (`output = 2`).
    #[prost(string, repeated, tag = "2")]
    pub(crate) output: Vec<String>,
    /// The operator, such as `MatMul` (`op_type = 4`).
    #[prost(string, tag = "4")]
    pub(crate) op_type: String,
    /// Its attributes (`attribute = 5`).
    #[prost(message, repeated, tag = "5")]
    pub(crate) attribute: Vec<AttributeProto>,
}

/// `AttributeProto`, of which only float attributes (such as `epsilon`) are read.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttributeProto {
    /// The attribute's name (`name = 1`).
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// The value of a float attribute; `None` for the other kinds (`f = 2`).
    #[prost(float, optional, tag = "2")]
    pub(crate) f: Option<f32>,
}

/// `TensorProto`: a tensor, here a graph initializer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorProto {
    /// The shape (`dims = 1`).
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub(crate) dims: Vec<i64>,
    /// The element type, a `TensorProto.DataType` value such as 1 (FLOAT) (`data_type = 2`).
    #[prost(int32, tag = "2")]
    pub(crate) data_type: i32,
    /// The values of a float tensor stored as typed data (`float_data = 4`).
    #[prost(float, repeated, tag = "4")]
    pub(crate) float_data: Vec<f32>,
    /// The name that nodes use to read it (`name = 8`).
    #[prost(string, tag = "8")]
    pub(crate) name: String,
    /// The values as little-endian bytes, when stored raw; shares the file's buffer
    /// (`raw_data = 9`).
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub(crate) raw_data: Option<Bytes>,
    /// The values of a double tensor stored as typed data (`double_data = 10`).
    #[prost(double, repeated, tag = "10")]
    pub(crate) double_data: Vec<f64>,
    /// Where the values are when they live in another file (`external_data = 13`).
    #[prost(message, repeated, tag = "13")]
    pub(crate) external_data: Vec<StringStringEntryProto>,
    /// 1 (EXTERNAL) when the values live in another file (`data_location = 14`).
    #[prost(int32, tag = "14")]
    pub(crate) data_location: i32,
}

/// `StringStringEntryProto`: one key and value.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StringStringEntryProto {
    /// `key = 1`.
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}
