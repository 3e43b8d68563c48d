# syntax=docker/dockerfile:1
# CMoE Server distribution: `cmoe` on a Java 21 runtime, with the shipped demo model.
#
#   docker build -t cmoe:0.1.0 .
#   docker run --rm cmoe:0.1.0 --help
#   docker run --rm -p 50051:50051 -v "$HOME/.cache/cmoe/models:/models:ro" cmoe:0.1.0 \
#       serve --model /models/brown-llama-S2A2E16 --host 0.0.0.0
#
# The build stage compiles with the Maven wrapper (tests are CI's job: ./cmoe test); the runtime
# stage holds only the JRE, the jars and the model. DJL's PyTorch natives in the distribution are
# the linux-x86_64 CPU build, hence the amd64 platform.

FROM --platform=linux/amd64 eclipse-temurin:21-jdk AS build
WORKDIR /src
COPY . .
# BuildKit keeps the Maven repository between builds, so only changed dependencies download
RUN --mount=type=cache,target=/root/.m2 \
    ./mvnw -B -ntp -DskipTests package \
 && mkdir -p /opt/cmoe/bin \
 && cp deploy/target/cmoe-deploy-*.jar /opt/cmoe/cmoe.jar \
 && cp -r deploy/target/lib /opt/cmoe/lib \
 && cp -r models /opt/cmoe/models \
 && cp deploy/docker/cmoe /opt/cmoe/bin/cmoe

FROM --platform=linux/amd64 eclipse-temurin:21-jre
RUN groupadd --system --gid 10001 cmoe \
 && useradd --system --uid 10001 --gid cmoe --home-dir /opt/cmoe --shell /usr/sbin/nologin cmoe \
 && mkdir -p /var/cache/cmoe/djl \
 && chown -R cmoe:cmoe /var/cache/cmoe
COPY --from=build /opt/cmoe /opt/cmoe
ENV CMOE_HOME=/opt/cmoe \
    DJL_OFFLINE=true \
    DJL_CACHE_DIR=/var/cache/cmoe/djl \
    ENGINE_CACHE_DIR=/var/cache/cmoe/djl \
    PATH=/opt/cmoe/bin:$PATH
USER 10001:10001
WORKDIR /opt/cmoe
# gRPC, Prometheus metrics, Pekko Cluster (Artery)
EXPOSE 50051 9464 25520
ENTRYPOINT ["/opt/cmoe/bin/cmoe"]
CMD ["--help"]
