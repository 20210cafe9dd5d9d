// Package docker holds callbridge's container deployment: the controller's
// Dockerfile, the FreeSWITCH image in freeswitch/, docker-compose.yml and
// .env.example, and the tests that check them.
//
// The package has no Go API. Its tests validate the compose file with
// docker-compose and cross-check the files against each other and against
// ../freeswitch-conf; they build and run no containers.
package docker
