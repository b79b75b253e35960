// Jest for the LWC tests (salesforce/force-app/**/lwc/*/__tests__), run by check.sh from salesforce/
// (sfdx-lwc-jest finds the project's lwc folders through sfdx-project.json in the working
// directory). check.sh copies this file into .tools/salesforce-check so that the require below
// resolves to the pinned package.
const path = require('path');
const { jestConfig } = require('@salesforce/sfdx-lwc-jest/config');

module.exports = {
    ...jestConfig,
    testMatch: ['**/lwc/**/__tests__/**/*.test.js'],
    cacheDirectory: path.join(__dirname, 'jest-cache'),
};
