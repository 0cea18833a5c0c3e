"""unbroken: a WebRTC peer connection whose connections survive network changes."""
