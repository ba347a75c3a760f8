FROM alpine:3.20 AS runtime
ARG APP_VERSION
