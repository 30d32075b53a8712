//! Where events come from. `mqtt`: the sensor fleet through an MQTT broker. `rtsp`: street cameras. (Incident reports arrive through the gRPC API.)

pub mod mqtt;
pub mod rtsp;
