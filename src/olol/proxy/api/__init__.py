"""The proxy's HTTP API contract: the route table's row type (`table`), request bodies (`bodies`), and the
OpenAPI description made from the rows (`openapi`). The rows themselves: `olol.proxy.endpoints`."""
