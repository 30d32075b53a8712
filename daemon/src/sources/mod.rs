//! Where events come from. `mqtt`: the sensor fleet through an MQTT broker. (Cameras over
//! RTSP join here in a later issue; incident reports arrive through the gRPC API.)

pub mod mqtt;
