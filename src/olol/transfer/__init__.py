"""Copying models between hosts over the LAN: manifests, checked chunks, resumable verified downloads.

`olol.agent.transfer` serves it on every agent (ModelTransfer, protos/olol_models.proto);
`olol.placement` decides what goes where. Modules are imported where used: most need grpc.
"""
